"""cosmos-ray's camera conditioning and camera-conditioned DiT against the official ones
(tests/golden/robot_multiview.json, written by tools/official_golden.py: the official camera-file loader, Plücker
rays, frameinit condition mask and `CameraMiniTrainDITwithConditionalMask` of 2B/robot/multiview-agibot at the `dit`
fixture's tiny widths; see docs/reference-notes.md).

The rays and the bf16 velocity must be bit-identical (bf16 is what the released checkpoint runs in); float32 results
are compared within 1e-5 like the base DiT's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from cosmos_ray.models.camera_dit import CameraDiT, CameraDiTConfig
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT, load_dit
from cosmos_ray.models.plucker import invert_pose, plucker_tokens
from cosmos_ray.models.weights import CheckpointMismatchError, drop_training_entries
from tests.test_official_golden import unpack
from tools.golden.dit import random_dit_weights
from tools.golden.robot_multiview import LATENT_HW, STATE_T, VIEWS, net_inputs, net_order, sample_camera_rows

GOLDEN = json.loads((Path(__file__).resolve().parent / "golden" / "robot_multiview.json").read_text())


def fixture_config() -> CameraDiTConfig:
    return dataclasses.replace(CameraDiTConfig.preset("tiny"), state_t=STATE_T)


def our_net(dtype: torch.dtype = torch.float32) -> CameraDiT:
    model = CameraDiT(fixture_config())
    state = model.state_dict()
    state.update(random_dit_weights({name: tuple(value.shape) for name, value in state.items()}))
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).cast(dtype)


def frameinit_mask(views: int, state_t: int) -> torch.Tensor:
    mask = torch.zeros(views, state_t)
    mask[:, 0] = 1.0
    return mask.flatten()


def run(model: CameraDiT, dtype: torch.dtype, camera: torch.Tensor | None = None) -> torch.Tensor:
    inputs = net_inputs(model.cfg.crossattn_proj_in_channels)
    mask = frameinit_mask(len(VIEWS), STATE_T)[None, None, :, None, None].expand(1, 1, -1, *LATENT_HW)
    with torch.no_grad():
        return model(
            inputs["x"].to(dtype),
            inputs["timesteps"],
            inputs["crossattn_emb"].to(dtype),
            padding_mask=inputs["padding_mask"].to(dtype),
            condition_mask=mask.to(dtype),
            camera=unpack(GOLDEN["rays"]) if camera is None else camera,
        )


def test_config_is_the_released_net():
    official, ours = GOLDEN["config"], CameraDiTConfig()
    for field in dataclasses.fields(CameraDiTConfig):
        if field.name in official:
            assert getattr(ours, field.name) == official[field.name], field.name
    assert ours.fp32_modulation == official["use_wan_fp32_strategy"]
    assert ours.state_t == GOLDEN["state_t_of_the_model"] == 24 and ours.camera_channels == 1536
    # what the net's structure assumes of the flags it does not model
    assert official["concat_padding_mask"] and official["use_adaln_lora"] and official["use_crossattn_projection"]
    assert not official["extra_per_block_abs_pos_emb"] and not official["rope_enable_fps_modulation"]


def test_tiny_preset_has_the_fixture_widths():
    tiny = CameraDiTConfig.preset("tiny")
    for field, value in GOLDEN["widths"].items():
        assert getattr(tiny, field) == value, field
    assert (tiny.state_t, tiny.num_views, tiny.camera_channels) == (24, 3, 1536)


@pytest.mark.parametrize(
    "layout, cfg", [("released", CameraDiTConfig()), ("tiny", fixture_config())], ids=["2B", "tiny"]
)
def test_parameter_names_and_shapes_are_official(layout, cfg):
    with torch.device("meta"):
        ours = {name: list(value.shape) for name, value in CameraDiT(cfg).state_dict().items()}
    assert ours == drop_training_entries(GOLDEN["state_dict"][layout])


def test_frame_mask_holds_the_first_latent_of_each_view():
    assert torch.equal(unpack(GOLDEN["frame_mask"]), frameinit_mask(3, 24))


def official_file_cameras() -> tuple[torch.Tensor, torch.Tensor]:
    """What the official loader makes of the fixture's camera files, computed our way (float64 rows -> bf16)."""
    from cosmos_ray.robot_multiview import camera_tensors

    rows = {view: sample_camera_rows(view) for view in VIEWS}
    return camera_tensors(
        [rows[view][0][:STATE_T].tolist() for view in VIEWS], [rows[view][1][:STATE_T].tolist() for view in VIEWS]
    )


def test_camera_files_read_as_the_official_loader_reads_them():
    """Poses inverted to world-to-camera and intrinsics rescaled from 768 x 432 to 1280 x 704, in bf16."""
    extrinsics, intrinsics = official_file_cameras()
    assert torch.equal(extrinsics, unpack(GOLDEN["cameras"]["extrinsics"]))
    assert torch.equal(intrinsics, unpack(GOLDEN["cameras"]["intrinsics"]))


def test_plucker_rays_match_official_in_bf16():
    extrinsics, intrinsics = (unpack(GOLDEN["cameras"][key]) for key in ("extrinsics", "intrinsics"))
    rays = plucker_tokens(net_order(extrinsics), net_order(intrinsics), tuple(GOLDEN["picture"]))
    official = unpack(GOLDEN["rays"])[0]
    assert rays.dtype == official.dtype == torch.bfloat16 and rays.shape == (3 * STATE_T, 2, 3, 1536)
    assert torch.equal(rays, official)


def test_rays_are_unit_directions_and_moments_about_the_centre():
    pose = torch.tensor([[0.0, -1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0]])  # world to camera
    rays = plucker_tokens(pose, torch.tensor([20.0, 20.0, 8.0, 8.0]), (16, 16)).view(16, 16, 6)
    moment, direction = rays[..., :3], rays[..., 3:]
    centre = -pose[:, :3].T @ pose[:, 3]
    torch.testing.assert_close(direction.norm(dim=-1), torch.ones(16, 16))
    torch.testing.assert_close(moment, torch.linalg.cross(centre.expand_as(direction), direction))
    # the pixel at the principal point (8.5, 8.5 is 0.5 off it) looks almost along the camera's z axis
    expected = pose[:, :3].T @ torch.tensor([0.5, 0.5, 20.0]) / 20.0125
    torch.testing.assert_close(direction[8, 8], expected, atol=1e-3, rtol=0)


def test_bad_rotation_is_refused():
    with pytest.raises(ValueError, match="determinant 2"):
        invert_pose(torch.tensor([[2.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]))


def test_velocity_matches_official_in_float32():
    ours = run(our_net(torch.float32), torch.float32)
    torch.testing.assert_close(ours, unpack(GOLDEN["velocity"]["float32"]), rtol=1e-5, atol=1e-5)


def test_velocity_matches_official_in_bf16():
    official = unpack(GOLDEN["velocity"]["bfloat16"])
    ours = run(our_net(torch.bfloat16), torch.bfloat16)
    assert ours.dtype == official.dtype
    assert torch.equal(ours, official)


def test_cameras_change_the_velocity():
    model = our_net()
    rays = unpack(GOLDEN["rays"])
    assert not torch.equal(run(model, torch.float32), run(model, torch.float32, rays.flip(1)))


def test_a_time_shard_carries_its_frames_rays():
    model = our_net()
    inputs = net_inputs(model.cfg.crossattn_proj_in_channels)
    prepared = model.prepare(
        inputs["x"], inputs["timesteps"], inputs["crossattn_emb"], camera=unpack(GOLDEN["rays"]).float()
    )
    shard = prepared.select_frames(2, 5)
    assert torch.equal(shard.block_conditioning()["camera"], prepared.block_conditioning()["camera"][:, 2:5])


def test_official_checkpoint_loads_strictly(tmp_path):
    net = our_net()
    shapes = {name: tuple(shape) for name, shape in GOLDEN["state_dict"]["tiny"].items()}
    weights = {**net.state_dict(), **random_dit_weights(shapes)}
    counters = {name: torch.tensor(0) for name in shapes if name not in weights}
    torch.save({f"net.{name}": value for name, value in {**weights, **counters}.items()}, tmp_path / "cam_ema_bf16.pt")
    loaded = load_dit(tmp_path / "cam_ema_bf16.pt", fixture_config(), dtype=torch.float32, net=CameraDiT)
    assert isinstance(loaded, CameraDiT)
    assert torch.equal(run(loaded, torch.float32), run(net, torch.float32))


def test_base_checkpoint_does_not_fit():
    base = MiniTrainDiT(DiTConfig.preset("tiny")).state_dict()
    with pytest.raises(CheckpointMismatchError, match="cam_encoder.weight"):
        load_dit(base, CameraDiTConfig.preset("tiny"), dtype=torch.float32, net=CameraDiT)


def test_missing_or_misshapen_rays_say_what_to_pass():
    model = our_net()
    inputs = net_inputs(model.cfg.crossattn_proj_in_channels)
    args = (inputs["x"], inputs["timesteps"], inputs["crossattn_emb"])
    with pytest.raises(ValueError, match=r"camera: expected \(1 or 1, 6, 2, 3, 1536\).*got none"):
        model(*args)
    with pytest.raises(ValueError, match="got \\(1, 6, 2, 3, 6\\)"):
        model(*args, camera=torch.zeros(1, 6, 2, 3, 6))
