"""The action-conditioned robot model's spec, action derivation and chunked rollout against the official script
(tests/golden/robot_rollout.json, written by tools/official_golden.py: `ActionConditionedInferenceArguments`'
defaults, `get_action_sequence_from_states`, and the official `inference` loop with its model call replaced by
`stand_in_video`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmos_ray.core.action_spec import ActionSpec
from cosmos_ray.core.robot_episode import Episode, actions_from_states, resize_frame
from cosmos_ray.robot_action import ActionEngine
from cosmos_ray.stages import to_uint8_frames
from tests.test_official_golden import unpack
from tools.golden.robot_rollout import episode_frames, stand_in_video

GOLDEN = json.loads((Path(__file__).resolve().parent / "golden" / "robot_rollout.json").read_text())
REQUIRED = {"name": "golden", "input_root": "/data", "input_json_sub_folder": "annotation"}
OURS = {"cosmos_ray_annotation": "0.json"}


def test_spec_defaults_are_the_official_arguments():
    spec = ActionSpec.from_dict({**REQUIRED, **OURS})
    for field, default in GOLDEN["defaults"].items():
        if default is None or field == "prompt_path":
            continue
        assert getattr(spec, field) == default, field
    official = set(GOLDEN["defaults"]) - {"prompt_path"}
    assert official <= set(ActionSpec.model_fields), official - set(ActionSpec.model_fields)


@pytest.mark.parametrize("case", sorted(GOLDEN["actions"]))
def test_actions_from_states_match_the_official_derivation(case):
    golden = GOLDEN["actions"][case]
    ours = actions_from_states(
        np.array(golden["states"]),
        np.array(golden["gripper"]),
        fps_downsample_ratio=golden["fps_downsample_ratio"],
        action_scaler=golden["action_scaler"],
        gripper_scale=golden["gripper_scale"],
    )
    expected = unpack(golden["actions"]).numpy()
    assert ours.shape == expected.shape and np.abs(expected[:, 3:6]).max() > 1.0  # large turns: the wrap matters
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


class StandInEngine(ActionEngine):
    """The rollout with the official fixture's stand-in in the place of the model call; records each call."""

    def __init__(self):  # no generator: generate_chunk is the stand-in
        self.calls: list[dict] = []

    def generate_chunk(self, spec, frame, actions, seed, prompts, progress, timings):
        self.calls.append({"frame": frame, "actions": actions, "seed": seed})
        video = stand_in_video(frame, actions.astype(np.float32), seed, spec.chunk_size + 1)
        return to_uint8_frames(torch.from_numpy(video))


@pytest.mark.parametrize("case", sorted(GOLDEN["rollouts"]))
def test_rollout_matches_the_official_script(case):
    golden = GOLDEN["rollouts"][case]
    spec = ActionSpec.from_dict({**REQUIRED, **OURS, **golden["arguments"]})
    start = episode_frames(golden["seed"])[spec.start_frame_idx]
    if spec.height_width is not None:
        start = resize_frame(start, spec.height_width)
    actions = actions_from_states(
        np.array(golden["states"])[:, :6],
        np.array(golden["gripper"]),
        fps_downsample_ratio=spec.fps_downsample_ratio,
        action_scaler=spec.action_scaler,
        gripper_scale=spec.gripper_scale,
    )
    engine = StandInEngine()
    frames, chunks = engine.rollout(spec, Episode("a.json", "v.mp4", actions, start), (torch.zeros(1),) * 2, None, {})

    assert len(engine.calls) == len(golden["calls"]) == len(chunks)
    for ours, official in zip(engine.calls, golden["calls"], strict=True):
        np.testing.assert_array_equal(ours["frame"], unpack(official["first_frame"]).numpy())
        np.testing.assert_array_equal(ours["actions"].astype(np.float32), unpack(official["actions"]).numpy())
        assert ours["seed"] == official["seed"] and official["other_frames_max"] == 0
        assert official["num_video_frames"] == spec.chunk_size + 1
        assert official["num_latent_conditional_frames"] == spec.num_latent_conditional_frames
        assert (official["guidance"], official["num_steps"]) == (spec.guidance, spec.num_steps)
        assert (official["prompt"], official["negative_prompt"]) == (spec.prompt, spec.negative_prompt)
    np.testing.assert_array_equal(frames, unpack(golden["video"]).numpy())
    assert golden["fps"] == spec.fps
    assert chunks[-1]["frames"][1] == len(frames)
