"""The camera-conditioned DiT of `2B/robot/multiview-agibot` (the reference's `CameraMiniTrainDITwithConditionalMask`).

The three views' latents are concatenated along time, (B, 16, 3 * 24, H, W), and run as one sequence with one 3D
RoPE over all of it (positions 0..71 in time: no view embedding, no per-view RoPE). What differs from `MiniTrainDiT`
(official `cosmos_predict2/_src/predict2/camera/networks/dit_multiview_camera.py` at 7e5ffc83 of the 1.5.0 tree, a
copy of `minimal_v4_dit.py` with these changes):

- every block has a `cam_encoder`, Linear(1536 -> model_channels, no bias), of the Plücker rays of its token's 16 x
  16 pixels (`cosmos_ray.models.plucker.plucker_tokens`: 6 values per pixel); its output is added to the modulated,
  normalized tokens that self-attention attends over (`Block.forward`, lines 1194-1199), in the model dtype (the
  reference's fp32 plan leaves the encoder out);
- the reference's self-attention keeps q and k in float32 after the RoPE under its fp32 plan and its attention
  function (`predict2/networks/attention.py`) casts q, k and v to bf16: the same values as the base net's cast back.

Everything else (patch embedding with condition and padding masks, timestep embedding, AdaLN-LoRA, the fp32 plan,
cross-attention, final layer) is the base DiT's. Parameter names are the reference's: the released
`robot/multiview-agibot/f740321e-2cd6-4370-bbfe-545f4eca2065_ema_bf16.pt` loads strictly
(`load_dit(..., net=CameraDiT)`). diffusers (0.42.1) has no camera-conditioned Cosmos model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from cosmos_ray.models.dit import Block, DiTConfig, DiTInputs, MiniTrainDiT

CAMERA_DIT_PRESETS = ("2B", "tiny")


@dataclass(frozen=True)
class CameraDiTConfig(DiTConfig):
    """The camera-conditioned net: `DiTConfig` plus its cameras. Defaults are the released 2B net as the official
    configuration composes its experiment (`multicamera_video2video_rectified_flow_2b_res_720_fps16_s3_agibot_frameinit`
    in `predict2/camera/configs/multiview_camera/experiment/exp_2b.py`, net `cosmos_v1_2B_net_camera_conditioned` of
    `.../multiview_camera/net.py`, 7e5ffc83): the base 2B net's shapes and settings (2048 channels, 28 blocks, 16
    heads, timestep_scale 0.001, RoPE extrapolation h/w 3.0 and t 1.0, no fps modulation, the fp32 plan), the
    Block's `cam_dim` 1536, three views of 24 latent frames (the model's `state_t` 24: 93 frames per view)."""

    camera_patch: int = 16  # pixels per token side: the VAE's 8 x the patch embedding's 2 (the conditioner's)
    state_t: int = 24  # latent frames per view
    num_views: int = 3

    @classmethod
    def preset(cls, name: str) -> CameraDiTConfig:
        """`2B`: the released net; `tiny`: the base tiny preset's widths with its cameras and views."""
        if name == "2B":
            return cls()
        if name == "tiny":
            tiny = DiTConfig.preset("tiny")
            return cls(**{field.name: getattr(tiny, field.name) for field in dataclasses.fields(DiTConfig)})
        raise ValueError(f"unknown camera DiT preset {name!r}; expected one of {', '.join(CAMERA_DIT_PRESETS)}")

    def describe(self) -> str:
        return f"camera-conditioned {super().describe()}, {self.num_views} views of {self.state_t} latent frames"

    @property
    def camera_channels(self) -> int:
        """Plücker values per token (the reference's `cam_dim`): 6 per pixel of a 16 x 16 square."""
        return 6 * self.camera_patch**2


class CameraBlock(Block):
    """The base block with the camera encoder, whose output joins the tokens self-attention attends over."""

    def __init__(self, cfg: DiTConfig):
        super().__init__(cfg)
        self.cam_encoder = nn.Linear(cast(CameraDiTConfig, cfg).camera_channels, cfg.model_channels, bias=False)

    def self_attention_input(self, h: torch.Tensor, camera: torch.Tensor | None = None) -> torch.Tensor:
        """h (B, T, HW, D) + the encoded rays, camera (B or 1, T, HW, camera_channels), in h's dtype."""
        if camera is None:
            raise ValueError("the camera-conditioned DiT needs the Plücker rays of every token (camera=)")
        return h + self.cam_encoder(camera.to(self.cam_encoder.weight.dtype))


@dataclass
class CameraDiTInputs(DiTInputs):
    """`DiTInputs` with the rays of every token, (B or 1, T, H*W, camera_channels), which every block gets."""

    camera: torch.Tensor

    def block_conditioning(self) -> dict[str, torch.Tensor]:
        return {"camera": self.camera}

    def select_frames(self, start: int, stop: int) -> DiTInputs:
        """The inputs of latent frames [start, stop), the rays of those frames with them."""
        shard = cast(CameraDiTInputs, super().select_frames(start, stop))
        return dataclasses.replace(shard, camera=self.camera[:, start:stop])


class CameraDiT(MiniTrainDiT):
    """The camera-conditioned DiT. Call it like `MiniTrainDiT`, with the views along time and their rays."""

    cfg: CameraDiTConfig
    block_type = CameraBlock
    config_type = CameraDiTConfig

    def prepare(  # type: ignore[override]  # camera in the place of the base's extra seams
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        crossattn_emb: torch.Tensor,
        fps: float | None = None,
        padding_mask: torch.Tensor | None = None,
        condition_mask: torch.Tensor | None = None,
        camera: torch.Tensor | None = None,
    ) -> DiTInputs:
        """The base DiT's inputs with the rays of every token, (B or 1, T, H'W', camera_channels); the net is called
        as `MiniTrainDiT` (the views one after another in time) with `camera=`.

        camera: (B or 1, T, H / patch_spatial, W / patch_spatial, camera_channels), the Plücker rays of every
          token (`cosmos_ray.models.plucker.plucker_tokens` of each latent frame's camera), required.
        """
        inputs = super().prepare(x, timesteps, crossattn_emb, fps, padding_mask, condition_mask)
        t, h, w = inputs.grid
        expected = (t, h, w, self.cfg.camera_channels)
        if (
            camera is None
            or camera.ndim != 5
            or tuple(camera.shape[1:]) != expected
            or camera.shape[0]
            not in (
                1,
                x.shape[0],
            )
        ):
            got = "none" if camera is None else tuple(camera.shape)
            raise ValueError(
                f"camera: expected ({x.shape[0]} or 1, {t}, {h}, {w}, {self.cfg.camera_channels}), the Plücker rays "
                f"of every token of the {t} latent frames, got {got}"
            )
        return CameraDiTInputs(**vars(inputs), camera=camera.flatten(2, 3))
