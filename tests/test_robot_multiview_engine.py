"""The 3-camera robot model end to end (`2B/robot/multiview-agibot`, tiny preset): official scene files in, the views
stacked in height out, through `python -m jobs.local`; the spec format and its camera-file errors; the held frames."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos_ray.core.agibot_spec import AGIBOT_MODEL, VIEWS, AgibotSpec, read_camera_rows
from cosmos_ray.core.media import read_video
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.spec_errors import SpecError
from cosmos_ray.core.spec_formats import parse_spec
from cosmos_ray.core.storage import Storage
from cosmos_ray.robot_multiview import RobotMultiviewEngine, net_order, read_view_image
from jobs import local
from tests.robot_helpers import SCENE_CAMERA_ROWS as ROWS
from tests.robot_helpers import write_scene


def test_official_defaults_and_files(tmp_path):
    spec_file = write_scene(tmp_path)
    spec = parse_spec(json.loads(spec_file.read_text()), model=AGIBOT_MODEL, base_dir=str(tmp_path))
    assert isinstance(spec, AgibotSpec)
    assert (spec.seed, spec.guidance, spec.num_steps, spec.fps) == (1, 7, 35, 30)
    assert spec.image_paths["hand_1"].endswith("input_images/3_hand_1.png")
    assert spec.input_urls()["cameras/intrinsic_head"].endswith("cameras/3_intrinsic_head.txt")
    with pytest.raises(SpecError, match="stack_mode.* is not a known field"):
        parse_spec({"name": "s", "input_name": "3", "prompt": "p", "stack_mode": "time"}, model=AGIBOT_MODEL)
    with pytest.raises(SpecError, match="input_name.*start with the scene's number"):
        parse_spec({"name": "s", "input_name": "abc", "prompt": "p"}, model=AGIBOT_MODEL)


def test_camera_file_errors_name_the_scene_file_and_frame(tmp_path):
    write_scene(tmp_path)
    spec = AgibotSpec(name="s", input_name="3", prompt="p", base_path=str(tmp_path))
    rows = read_camera_rows(spec, "extrinsic", "head", Storage(), ROWS)
    assert len(rows) == ROWS and len(rows[0]) == 12
    bad = tmp_path / "cameras" / "3_extrinsic_head.txt"
    lines = bad.read_text().splitlines()
    bad.write_text("\n".join([*lines[:5], "2 0 0 0 0 1 0 0 0 0 1 0", *lines[6:]]))
    with pytest.raises(SpecError, match=r"'s'.*cameras/extrinsic_head.*line 6 \(latent frame 5\).*determinant 2"):
        read_camera_rows(spec, "extrinsic", "head", Storage(), ROWS)
    short = tmp_path / "cameras" / "3_intrinsic_hand_0.txt"
    short.write_text("\n".join(short.read_text().splitlines()[:10]))
    with pytest.raises(SpecError, match="has 10 rows; the model needs one per latent frame, 24"):
        read_camera_rows(spec, "intrinsic", "hand_0", Storage(), ROWS)


def test_image_is_scaled_to_cover_and_centre_cropped():
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, 10:30] = 255  # the middle half is white
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    pixels = read_view_image(buffer.getvalue(), (16, 16))  # scaled to 16 x 32, the middle 16 columns kept
    assert pixels.shape == (3, 16, 16) and pixels.min() >= -1 and pixels.max() <= 1
    assert torch.allclose(pixels[:, :, 4:12], torch.ones(3, 16, 8))


def test_each_views_first_latent_is_held_clean_at_the_conditional_timestep(tmp_path, monkeypatch):
    """The sampler holds latent frames 0, 24 and 48 (each view's first, in the net's order): the net sees them
    clean with a mask of 1 at the frameinit recipe's conditional-frame timestep 0.1, and they come back clean."""
    data = json.loads(write_scene(tmp_path).read_text()) | {"num_steps": 2}
    spec = AgibotSpec.from_dict(data, base_dir=str(tmp_path))
    engine = RobotMultiviewEngine.from_options(EngineOptions(source="tiny", model=AGIBOT_MODEL), device="cpu")
    seen = []

    def velocity_model(x, timesteps, context, *, condition_mask, camera):
        seen.append((x[0, 0, :, 0, 0].clone(), timesteps[0].clone(), condition_mask[0, 0, :, 0, 0].clone()))
        return torch.zeros_like(x)

    monkeypatch.setattr(engine.generator, "velocity_model", velocity_model)
    first = torch.randn(len(VIEWS), 16, 1, 2, 3)  # (V, C, 1, h, w) in the loader's order
    rays = torch.zeros(1)
    latents = engine.sample(spec, (torch.zeros(1, 512, 8), torch.zeros(1, 512, 8)), first, rays, None)
    held = torch.tensor([0, ROWS, 2 * ROWS])
    expected_mask = torch.zeros(3 * ROWS)
    expected_mask[held] = 1
    clean = net_order(first)[:, :, 0]  # (V, C, h, w) in the net's order
    for x, timesteps, mask in seen:
        assert torch.equal(mask, expected_mask)
        assert torch.allclose(timesteps[held], torch.tensor(0.1))
        assert (timesteps[expected_mask == 0] > 1).all()  # the noisy frames: flow time x 1000
        assert torch.equal(x[held], clean[:, 0, 0, 0])
    # the solver carries held frames from their noise to the clean latents; the official noise has the loader's
    # first latents there (head, hand_0 swapped against the net's order), so two steps get them close, not exact
    assert torch.allclose(latents[0, :, held].transpose(0, 1), clean, atol=1e-3)
    assert torch.allclose(latents[0, :, held[2]], clean[2], atol=1e-6)  # hand_1: the same view in both orders


def test_local_cli_writes_the_stacked_views(tmp_path):
    spec_file = write_scene(tmp_path / "scene")
    data = json.loads(spec_file.read_text()) | {"num_steps": 2}
    spec_file.write_text(json.dumps(data))
    out = tmp_path / "out"
    argv = ["-i", str(spec_file), "-o", str(out), "--model", AGIBOT_MODEL, "--preset", "tiny", "--device", "cpu"]
    assert local.main(argv) == 0
    (meta_file,) = (out / "meta").glob("*.json")
    record = json.loads(meta_file.read_text())
    meta = record["metadata"]
    assert record["status"] == "ok" and meta["model"] == AGIBOT_MODEL and meta["fps"] == 30
    assert meta["resolution"] == [3 * 64, 96] and meta["num_frames"] == 93
    assert meta["views"] == [
        {"camera": view, "rows": [index * 64, (index + 1) * 64]} for index, view in enumerate(VIEWS)
    ]
    assert len(meta["cameras"]["hand_0"]["extrinsics_camera_to_world"]) == ROWS
    (video,) = (out / "videos").glob("*.mp4")
    assert read_video(str(video)).shape == (93, 3 * 64, 96, 3)
