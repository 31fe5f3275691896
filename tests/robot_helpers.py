"""The robot models' official input files, written by the tests.

- `write_episode`: a synthetic episode in the official Bridge layout: `{root}/videos/{id}.mp4` and
  `{root}/annotation/test/{id}.json` with `videos`, `state` (x, y, z, roll, pitch, yaw, pad) and
  `continuous_gripper_state` per frame, as the official action-conditioned inference reads them;
- `write_scene`: an official AgiBot scene folder (`input_images/{i}_{view}.png`, `cameras/{i}_{kind}_{view}.txt`)
  and its spec file, as the official robot multiview inference reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cosmos_ray.core.agibot_spec import LATENT_FRAMES_PER_VIEW, VIEWS
from cosmos_ray.core.media import write_mp4
from tools.golden.robot_multiview import sample_camera_rows

ANNOTATION_FOLDER = "annotation/test"
SCENE_CAMERA_ROWS = LATENT_FRAMES_PER_VIEW  # rows the model reads of each camera file (the files hold one more)


def episode_states(num_frames: int, seed: int = 0) -> tuple[list[list[float]], list[float]]:
    """A smooth random arm trajectory (7 values per state, as Bridge's) and gripper openings in [0, 1]."""
    rng = np.random.RandomState(seed)
    steps = rng.normal(0, [0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 0.0], (num_frames, 7))
    states = np.cumsum(steps, axis=0) + [0.3, 0.0, 0.1, 0.2, -0.3, 1.0, 0.0]
    gripper = np.clip(0.5 + np.cumsum(rng.normal(0, 0.1, num_frames)), 0, 1)
    return states.tolist(), gripper.tolist()


def write_episode(
    root: Path, episode: str = "0", *, num_frames: int = 16, size: tuple[int, int] = (32, 48), seed: int = 0
) -> dict:
    """Writes one episode under `root` and returns the spec (a JSON object) of it for model 2B/robot/action-cond."""
    rng = np.random.RandomState(seed)
    height, width = size
    base = rng.randint(0, 256, (1, height // 8, width // 8, 3))
    frames = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2).repeat(num_frames, axis=0)  # blocky: survives H.264
    frames = np.clip(frames + np.arange(num_frames)[:, None, None, None] * 4, 0, 255).astype(np.uint8)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "videos" / f"{episode}.mp4").write_bytes(write_mp4(frames, fps=5))
    states, gripper = episode_states(num_frames, seed)
    annotation = {
        "texts": ["put the spoon in the pot"],
        "videos": [{"video_path": f"videos/{episode}.mp4"}],
        "episode_id": episode,
        "state": states,
        "continuous_gripper_state": gripper,
    }
    (root / ANNOTATION_FOLDER).mkdir(parents=True, exist_ok=True)
    (root / ANNOTATION_FOLDER / f"{episode}.json").write_text(json.dumps(annotation))
    return {
        "name": f"episode-{episode}",
        "input_root": str(root),
        "input_json_sub_folder": ANNOTATION_FOLDER,
        "cosmos_ray_annotation": f"{episode}.json",
        "num_steps": 2,
        "guidance": 0,
    }


def write_scene(folder: Path, index: int = 3, **fields: Any) -> Path:
    """An official scene folder (input_images/, cameras/ with 25 rows per file, of which the model reads 24) and
    its spec file `{index}.json` (name "scene", with `fields` over the defaults); returns the spec file's path."""
    (folder / "input_images").mkdir(parents=True, exist_ok=True)
    (folder / "cameras").mkdir(exist_ok=True)
    rng = np.random.RandomState(0)
    for view in VIEWS:
        image = Image.fromarray(rng.randint(0, 255, (50, 80, 3), dtype=np.uint8))
        image.save(folder / "input_images" / f"{index}_{view}.png")
        poses, intrinsics = sample_camera_rows(view)
        rows = SCENE_CAMERA_ROWS + 1
        np.savetxt(folder / "cameras" / f"{index}_extrinsic_{view}.txt", np.resize(poses, (rows, 12)))
        np.savetxt(folder / "cameras" / f"{index}_intrinsic_{view}.txt", np.resize(intrinsics, (rows, 4)))
    spec = folder / f"{index}.json"
    spec.write_text(
        json.dumps({"name": "scene", "input_name": str(index), "prompt": "a robot folds a towel", **fields})
    )
    return spec


def break_state(annotation: Path, frame: int) -> None:
    """Makes state `frame` of an episode's annotation malformed (3 values, one not a number)."""
    data = json.loads(annotation.read_text())
    data["state"][frame] = [0.1, 0.2, "high"]
    annotation.write_text(json.dumps(data))
