"""Fixture `robot_rollout`: the official action-conditioned inference script of `2B/robot/action-cond`
(cosmos_predict2/action_conditioned.py, `ActionConditionedInferenceArguments` of action_conditioned_config.py) on
synthetic Bridge-layout episodes. Recorded:

  defaults  every field of `ActionConditionedInferenceArguments` with its default (required fields: null)
  actions   `get_action_sequence_from_states` on seeded states (`episode_states`): Euler actions for
            several fps_downsample_ratio / action_scaler / gripper_scale
  rollouts  the official `inference` loop over one episode's annotation, with the model call
            (`Video2WorldInference.generate_vid2world`) replaced by `stand_in_video`, a fixed function of the clip
            it is given, the chunk's actions and the seed; the video reader returns `episode_frames`. Per case:
            each call's arguments (the conditioning frame, the other frames' maximum, actions, seed, frame count,
            latent conditional frames, guidance, steps, prompts) and the video the script writes with its fps.

What it pins down is the rollout around the model: chunking and padding of the actions, the seed of each chunk,
the conditioning frame of each chunk (the start frame, then the last generated frame as uint8), the stitching of
the chunks and the written fps. The model call itself is the base sampler with the action net (`action_cond`).
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

from tools.golden.harness import Official, pack, write

FRAME_HW = (16, 32)
NUM_VIDEO_FRAMES = 8

# case -> (number of states, inference arguments besides the required ones)
ROLLOUTS: dict[str, tuple[int, dict]] = {
    "defaults_two_chunks": (16, {}),  # 15 actions: a chunk of 12, then 3 padded with zeros
    "start_and_downsample": (40, {"start_frame_idx": 2, "fps_downsample_ratio": 2, "guidance": 0}),
    "single_chunk_two_latents": (30, {"single_chunk": True, "num_latent_conditional_frames": 2, "chunk_size": 8}),
    "resized_prompt": (14, {"resolution": "32,16", "prompt": "pick up the cup", "num_steps": 3}),
}
ACTION_CASES = {  # case -> (states, fps_downsample_ratio, action_scaler, gripper_scale)
    "defaults": (30, 1, 20.0, 1.0),
    "downsampled": (31, 3, 20.0, 1.0),
    "scaled": (12, 1, 7.5, 2.0),
}


def episode_states(num_frames: int, seed: int = 0) -> tuple[list[list[float]], list[float]]:
    """A random arm trajectory with large turns (7 values per state, as Bridge's) and gripper openings in [0, 1]."""
    rng = np.random.RandomState(seed)
    steps = rng.normal(0, [0.02, 0.02, 0.02, 0.4, 0.4, 0.4, 0.0], (num_frames, 7))
    states = np.cumsum(steps, axis=0) + [0.3, 0.0, 0.1, 0.2, -0.3, 3.0, 0.0]
    gripper = np.clip(0.5 + np.cumsum(rng.normal(0, 0.1, num_frames)), 0, 1)
    return states.tolist(), gripper.tolist()


def episode_frames(seed: int = 0) -> np.ndarray:
    """The episode video the stand-in reader returns: uint8 (NUM_VIDEO_FRAMES, H, W, 3)."""
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, (NUM_VIDEO_FRAMES, *FRAME_HW, 3)).astype(np.uint8)


def stand_in_video(first_frame: np.ndarray, actions: np.ndarray, seed: int, num_frames: int) -> np.ndarray:
    """The model stand-in: float32 (3, num_frames, H, W) in about [-1.1, 1.1] from the conditioning frame uint8
    (H, W, 3), the chunk's actions (A, 7) and the seed; every frame differs, so the stitching shows."""
    pixels = first_frame.astype(np.float32).transpose(2, 0, 1)[:, None] / 127.5 - 1.0  # (3, 1, H, W)
    steps = np.arange(num_frames, dtype=np.float32)[None, :, None, None]
    drift = np.float32(np.tanh(actions.astype(np.float32).sum() * 0.01) + 0.003 * (seed % 97))
    return (0.9 * pixels + 0.05 * steps * drift - 0.02 * steps / num_frames).astype(np.float32)


def robot_rollout(official: Official, out: Path) -> None:
    script = importlib.import_module("cosmos_predict2.action_conditioned")  # the checkout's, on sys.path
    config = importlib.import_module("cosmos_predict2.action_conditioned_config")

    official.module("predict2.action.datasets.dataset_utils")  # its rotations: recorded in the provenance
    official.used.update({str(script.__file__), str(config.__file__)})
    arguments = config.ActionConditionedInferenceArguments
    defaults = {
        name: (None if field.is_required() else _plain(field.default)) for name, field in arguments.model_fields.items()
    }

    actions = {}
    for case, (frames, ratio, scaler, gripper_scale) in ACTION_CASES.items():
        states, gripper = episode_states(frames, seed=len(case))
        derived = script.get_action_sequence_from_states(
            {"state": states, "continuous_gripper_state": gripper},
            fps_downsample_ratio=ratio,
            action_scaler=scaler,
            gripper_scale=gripper_scale,
        )
        actions[case] = {
            "states": states,
            "gripper": gripper,
            "fps_downsample_ratio": ratio,
            "action_scaler": scaler,
            "gripper_scale": gripper_scale,
            "actions": pack(derived),
        }

    rollouts = {}
    for case, (num_states, overrides) in ROLLOUTS.items():
        rollouts[case] = _rollout(script, arguments, num_states, overrides, seed=len(case))
    content = {
        "defaults": defaults,
        "actions": actions,
        "frame_hw": list(FRAME_HW),
        "rollouts": rollouts,
        "stand_ins": {
            "Video2WorldInference": "records each generate_vid2world call and returns stand_in_video() of it",
            "mediapy.read_video": "episode_frames() (tools/golden/robot_rollout.py); write_video is captured",
            "torch.cuda.memory_allocated": "0 (the script logs it)",
        },
    }
    write(out, "robot_rollout", official, content)


def _rollout(script: types.ModuleType, arguments: type, num_states: int, overrides: dict, seed: int) -> dict:
    calls: list[dict] = []
    written: dict = {}
    video = episode_frames(seed)

    class StandInInference:
        def __init__(self, **kwargs):
            pass

        def generate_vid2world(self, **kwargs):
            clip = kwargs["input_path"]  # uint8 (1, 3, T, H, W)
            first = clip[0, :, 0].permute(1, 2, 0).numpy()
            action = kwargs["action"].numpy()
            calls.append(
                {
                    "first_frame": pack(first),
                    "other_frames_max": int(clip[0, :, 1:].max()),
                    "num_clip_frames": clip.shape[2],
                    "actions": pack(action),
                    **{k: kwargs[k] for k in ("seed", "num_video_frames", "num_latent_conditional_frames")},
                    **{k: kwargs[k] for k in ("guidance", "num_steps", "prompt", "negative_prompt", "resolution")},
                }
            )
            generated = stand_in_video(first, action, kwargs["seed"], kwargs["num_video_frames"])
            return torch.from_numpy(generated)[None]

        def cleanup(self):
            pass

    states, gripper = episode_states(num_states, seed)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "annotation").mkdir()
        annotation = {"videos": [{"video_path": "videos/0.mp4"}], "state": states, "continuous_gripper_state": gripper}
        (root / "annotation" / "0.json").write_text(json.dumps(annotation))
        (root / "0.mp4").touch()  # the script asks for a video directly in input_root when 2 latent frames are held
        inference_args = arguments(
            name="golden", input_root=root, input_json_sub_folder="annotation", save_root=root / "out", **overrides
        )
        setup = types.SimpleNamespace(
            model_key=next(iter(script.MODEL_CHECKPOINTS)),
            experiment="stand-in",
            checkpoint_path="stand-in",
            context_parallel_size=1,
            config_file="stand-in",
        )
        patched = {
            (script, "Video2WorldInference"): StandInInference,
            (script.mediapy, "read_video"): lambda path: video,
            (script.mediapy, "write_video"): lambda path, frames, fps: written.update(frames=frames, fps=fps),
            (torch.cuda, "memory_allocated"): lambda device=None: 0,
        }
        saved = {key: getattr(*key) for key in patched}
        try:
            for (owner, name), value in patched.items():
                setattr(owner, name, value)
            script.inference(setup, inference_args)
        finally:
            for (owner, name), value in saved.items():
                setattr(owner, name, value)
    return {
        "num_states": num_states,
        "arguments": overrides,
        "seed": seed,
        "states": states,
        "gripper": gripper,
        "calls": calls,
        "video": pack(written["frames"]),
        "fps": written["fps"],
    }


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    return value if isinstance(value, (bool, int, float, str)) or value is None else repr(value)


if __name__ == "__main__":
    sys.exit("run through tools/official_golden.py --only robot_rollout")
