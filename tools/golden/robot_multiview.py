"""Fixture `robot_multiview`: the camera conditioning and the net of `2B/robot/multiview-agibot` (official code).

  cameras    the official camera loader (`load_agibot_camera_fn` of `cosmos_predict2/robot_multiview.py`) on camera
             files this script writes (`sample_camera_rows`: 3 views, 2 latent frames read of 3 rows, 720p rescaling):
             the world-to-camera poses and rescaled intrinsics it hands on, bf16
  rays       `convert_camera_to_plucker_rays` (`predict2/camera/utils.py`, the conditioner's) on those cameras,
             reordered as the frameinit model reorders them (hand_0, head, hand_1), for 32 x 48 pictures, in bf16
             as the inference runs it (poses rounded to bf16 fail the official float32 rotation check: bf16 only)
  config     the net config the official configuration composes for the checkpoint's experiment; the key layout
  velocity   the official `CameraMiniTrainDITwithConditionalMask` at the `dit` fixture's tiny widths (3 views of 2
             latent frames, the first frame of each view conditional as the frameinit conditioner marks it), seeded
             weights, the rays above as its camera input (in the net's dtype): float32 and bf16 (its fp32 plan on)
  frame_mask the frameinit condition mask of 3 views of 24 latent frames (`set_camera_conditioned_video_condition`)

Stand-ins: the `dit` fixture's four, the multiview fixture's Transformer Engine `DotProductAttention` (the camera
block builds its cross-attention without the block's backend), and the self-attention function: the official one
(`predict2/networks/attention.py`) casts q, k and v to bf16 (q and k are float32 after the RoPE under the fp32 plan);
the stand-in casts q and k to v's dtype, which is that cast in bf16 and keeps float32 runs in float32.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from tools.golden.dit import (
    TINY,
    AmpOnCpu,
    build_official_net,
    install_stand_ins,
    random_dit_weights,
    sdpa,
    te_fused_rope,
)
from tools.golden.harness import Official, pack, write
from tools.golden.model_config import NET_FIELDS, official_experiment_config
from tools.golden.multiview import TEDotProductAttention

EXPERIMENT = "multicamera_video2video_rectified_flow_2b_res_720_fps16_s3_agibot_frameinit"
CONFIG_FILE = "cosmos_predict2/_src/predict2/camera/configs/multiview_camera/config.py"
VIEWS = ("head", "hand_0", "hand_1")  # the official loader's order (load_images, cam_data_list)
NET_ORDER = (1, 0, 2)  # the frameinit model's reorder of the loader's views: hand_0, head, hand_1
STATE_T = 2  # latent frames per view in the fixture (the released model: 24)
FILE_ROWS = 3  # rows per camera file: more than STATE_T, as the official loader reads only the first ones
PICTURE = (32, 48)  # (H, W) of the fixture's pictures: 2 x 3 tokens of 16 x 16 pixels
LATENT_HW = (4, 6)  # the latent of PICTURE (VAE / 8)


def sample_camera_rows(view: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded camera-to-world poses (FILE_ROWS, 12) (rotation from a QR, det +1) and (fx, fy, cx, cy) (FILE_ROWS, 4)
    of a 768 x 432 picture, as the official camera files of one view hold them."""
    rng = np.random.RandomState(sum(map(ord, view)))
    poses, intrinsics = [], []
    for _ in range(FILE_ROWS):
        q, r = np.linalg.qr(rng.standard_normal((3, 3)))
        q = q * np.sign(np.diag(r))
        if np.linalg.det(q) < 0:
            q[:, 0] = -q[:, 0]
        poses.append(np.concatenate([q, rng.uniform(-2, 2, (3, 1))], axis=1).reshape(-1))
        intrinsics.append([rng.uniform(250, 500), rng.uniform(250, 500), rng.uniform(300, 460), rng.uniform(170, 260)])
    return np.array(poses), np.array(intrinsics)


def write_camera_files(folder: Path, index: int) -> None:
    """`cameras/{index}_{extrinsic,intrinsic}_{view}.txt` as `np.savetxt` writes them (the official files' layout)."""
    (folder / "cameras").mkdir(parents=True, exist_ok=True)
    for view in VIEWS:
        poses, intrinsics = sample_camera_rows(view)
        np.savetxt(folder / "cameras" / f"{index}_extrinsic_{view}.txt", poses)
        np.savetxt(folder / "cameras" / f"{index}_intrinsic_{view}.txt", intrinsics)


def official_cameras(official: Official) -> tuple[torch.Tensor, torch.Tensor]:
    """The official loader's world-to-camera poses (3 STATE_T, 3, 4) and 720p intrinsics (3 STATE_T, 4), bf16, views
    in the loader's order."""
    loader = __import__("cosmos_predict2.robot_multiview", fromlist=["load_agibot_camera_fn"]).load_agibot_camera_fn()
    official.used.add(str(Path(sys.modules["cosmos_predict2.robot_multiview"].__file__ or "")))
    with tempfile.TemporaryDirectory() as folder:
        write_camera_files(Path(folder), 0)
        (data,) = loader(
            "", torch.zeros(1), str(Path(folder) / "input_images" / "0"), folder, STATE_T,
            width=1280, height=704, input_video_res="720p", patch_spatial=16,
        )  # fmt: skip
    return data["extrinsics"], data["intrinsics"]


def net_order(tensor: torch.Tensor) -> torch.Tensor:
    """(3 n, ...) in the loader's view order -> the net's (the frameinit model's chunk reorder)."""
    chunks = tensor.chunk(len(VIEWS))
    return torch.cat([chunks[i] for i in NET_ORDER])


def official_rays(official: Official, extrinsics: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """The conditioner's Plücker rays (1, 3 STATE_T, 2, 3, 1536) of cameras in the net's order, in their dtype."""
    utils = official.module("predict2.camera.utils")
    size = torch.tensor([*PICTURE, *PICTURE])
    return utils.convert_camera_to_plucker_rays(
        extrinsics[None], intrinsics[None], size[None], patch_spatial=16, camera_patch_average=False, out_dtype=None
    )


def frame_mask(official: Official, views: int, state_t: int) -> torch.Tensor:
    """The frameinit condition mask (1, 1, views * state_t, 1, 1) for one conditional latent frame."""
    conditioner = official.module("predict2.camera.configs.multiview_camera.conditioner")
    condition = conditioner.CameraConditionedFrameinitCondition(crossattn_emb=None, data_type=None)
    gt = torch.zeros(1, 16, views * state_t, 1, 1)
    return condition.set_camera_conditioned_video_condition(gt, 1).condition_video_input_mask_B_C_T_H_W


def net_inputs(crossattn_width: int) -> dict[str, torch.Tensor]:
    """Latents of 3 views (1, 16, 3 STATE_T, 4, 6), per-frame timesteps (the conditional frames at 100), a text
    embedding and a padding mask; the condition mask comes from `frame_mask`."""
    rng = np.random.RandomState(5)
    t = len(VIEWS) * STATE_T
    timesteps = torch.full((len(VIEWS), STATE_T), 937.0)
    timesteps[:, 0] = 100.0
    return {
        "x": torch.from_numpy(rng.standard_normal((1, 16, t, *LATENT_HW)).astype(np.float32)),
        "timesteps": timesteps.reshape(1, t),
        "crossattn_emb": torch.from_numpy(3 * rng.standard_normal((1, 7, crossattn_width)).astype(np.float32)),
        "padding_mask": torch.zeros(1, 1, *PICTURE),
    }


def cast_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
    """Stand-in for `predict2/networks/attention.py`'s `attention`: q and k cast to v's dtype, then `sdpa`."""
    return sdpa(q.to(v.dtype), k.to(v.dtype), v, **kwargs)


def official_camera_net(official: Official, net_config, widths: dict | None, device: torch.device):
    install_stand_ins(official)
    sys.modules["transformer_engine.pytorch.attention"].DotProductAttention = TEDotProductAttention  # type: ignore[attr-defined]
    official.module("predict2.networks.a2a_cp").attention = cast_sdpa  # type: ignore[attr-defined]
    camera_net = official.module("predict2.camera.networks.dit_multiview_camera")
    camera_net.amp = AmpOnCpu  # type: ignore[attr-defined]
    camera_net.apply_rotary_pos_emb = te_fused_rope  # type: ignore[attr-defined]
    return build_official_net(official, net_config, widths, device)


def _plain(value):
    return list(value) if type(value).__name__ == "ListConfig" else value


def robot_multiview(official: Official, out: Path) -> None:
    sys.modules["transformer_engine"].__version__ = "1.0"  # type: ignore[attr-defined]  # the camera net's TE check
    config = official_experiment_config(official, EXPERIMENT, CONFIG_FILE)
    net_config = config.model.config.net
    released, _ = official_camera_net(official, net_config, None, torch.device("meta"))
    net, _ = official_camera_net(official, net_config, TINY, torch.device("cpu"))
    state = net.state_dict()
    drawn = random_dit_weights({k: tuple(v.shape) for k, v in state.items()})
    weights = {k: v.clone() for k, v in {**state, **drawn}.items()}  # float32 copies

    extrinsics, intrinsics = official_cameras(official)
    rays = official_rays(official, net_order(extrinsics), net_order(intrinsics))
    inputs = net_inputs(TINY["crossattn_proj_in_channels"])
    mask = frame_mask(official, len(VIEWS), STATE_T).expand(-1, -1, -1, *LATENT_HW)
    velocity = {}
    for dtype in (torch.float32, torch.bfloat16):
        net.float().load_state_dict(weights)
        name = str(dtype).removeprefix("torch.")
        with torch.no_grad():
            output = net.to(dtype)(
                x_B_C_T_H_W=inputs["x"].to(dtype),
                timesteps_B_T=inputs["timesteps"],
                crossattn_emb=inputs["crossattn_emb"].to(dtype),
                condition_video_input_mask_B_C_T_H_W=mask.to(dtype),
                padding_mask=inputs["padding_mask"].to(dtype),
                camera=rays.to(dtype),
            )
        velocity[name] = pack(output)

    content = {
        "experiment": EXPERIMENT,
        "config_file": CONFIG_FILE,
        "config": {field: _plain(net_config[field]) for field in NET_FIELDS if field in net_config},
        "state_t_of_the_model": config.model.config.state_t,
        "conditional_frame_timestep": config.model.config.conditional_frame_timestep,
        "state_dict": {
            "released": {k: list(v.shape) for k, v in released.state_dict().items()},
            "tiny": {k: list(v.shape) for k, v in state.items()},
        },
        "widths": TINY,
        "state_t": STATE_T,
        "picture": list(PICTURE),
        "latent_hw": list(LATENT_HW),
        "cameras": {"extrinsics": pack(extrinsics), "intrinsics": pack(intrinsics)},
        "rays": pack(rays),
        "frame_mask": pack(frame_mask(official, len(VIEWS), 24)[0, 0, :, 0, 0]),
        "weights": "random_dit_weights() in tools/golden/dit.py",
        "inputs": "sample_camera_rows() and net_inputs() in tools/golden/robot_multiview.py",
        "stand_ins": {
            "the dit fixture's four": "see tools/golden/dit.py",
            "transformer_engine DotProductAttention": "TEDotProductAttention: SDPA math kernel, heads flattened",
            "predict2.networks.attention.attention": "cast_sdpa: q and k cast to v's dtype (bf16: the official cast)",
        },
        "velocity": velocity,
    }
    write(out, "robot_multiview", official, content)
