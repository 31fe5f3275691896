"""3D rotary position embedding of the Cosmos DiT (the reference's `VideoRopePosition3DEmb`).

Each head dimension D is split into a temporal part and two equal spatial parts
(D = 128: h 42, w 42, t 44). Each axis has its own base 10000 * ratio ** (d / (d - 2)) (NTK-style
extrapolation; the 2B model uses ratios h 3.0, w 3.0, t 1.0), and the angles are laid out as
[t, h, w, t, h, w] so that rotation pairs channel i with channel i + D/2 ("rotate half").

The frequency tables are persistent buffers with the reference's names (`seq`, `dim_spatial_range`,
`dim_temporal_range`) so official checkpoints load strictly. They follow the module's dtype the way
the reference's do: in a bf16 model they are bf16-rounded, which changes the frequencies slightly,
and that is what the official bf16 inference computes with.
"""

from __future__ import annotations

import torch
from torch import nn

Rope = tuple[torch.Tensor, torch.Tensor]  # cos, sin: (T*H*W, 1, head_dim) float32


class VideoRope3D(nn.Module):
    seq: torch.Tensor  # buffers, registered in __init__
    dim_spatial_range: torch.Tensor
    dim_temporal_range: torch.Tensor

    def __init__(
        self,
        head_dim: int,
        max_t: int,
        max_h: int,
        max_w: int,
        h_extrapolation_ratio: float,
        w_extrapolation_ratio: float,
        t_extrapolation_ratio: float,
        fps_modulation: bool,
        base_fps: int = 24,
    ):
        super().__init__()
        dim_h = head_dim // 6 * 2
        dim_t = head_dim - 2 * dim_h
        self.max_t, self.max_h, self.max_w = max_t, max_h, max_w
        self.fps_modulation = fps_modulation
        self.base_fps = base_fps
        self.h_theta = 10000.0 * h_extrapolation_ratio ** (dim_h / (dim_h - 2))
        self.w_theta = 10000.0 * w_extrapolation_ratio ** (dim_h / (dim_h - 2))
        self.t_theta = 10000.0 * t_extrapolation_ratio ** (dim_t / (dim_t - 2))
        self.register_buffer("seq", torch.arange(max(max_t, max_h, max_w), dtype=torch.float32))
        self.register_buffer("dim_spatial_range", torch.arange(0, dim_h, 2, dtype=torch.float32) / dim_h)
        self.register_buffer("dim_temporal_range", torch.arange(0, dim_t, 2, dtype=torch.float32) / dim_t)

    def forward(self, t: int, h: int, w: int, fps: float | None = None) -> Rope:
        """cos and sin of the angles of a (t, h, w) patch grid, frame-major, in float32."""
        if t > self.max_t or h > self.max_h or w > self.max_w:
            raise ValueError(
                f"patch grid (t={t}, h={h}, w={w}) exceeds the RoPE table "
                f"(t={self.max_t}, h={self.max_h}, w={self.max_w})"
            )
        seq = self.seq.float()
        h_freqs = 1.0 / (self.h_theta ** self.dim_spatial_range.float())
        w_freqs = 1.0 / (self.w_theta ** self.dim_spatial_range.float())
        t_freqs = 1.0 / (self.t_theta ** self.dim_temporal_range.float())
        t_positions = seq[:t] / fps * self.base_fps if self.fps_modulation and fps is not None else seq[:t]

        angles_t = torch.outer(t_positions, t_freqs)[:, None, None, :].expand(t, h, w, -1)
        angles_h = torch.outer(seq[:h], h_freqs)[None, :, None, :].expand(t, h, w, -1)
        angles_w = torch.outer(seq[:w], w_freqs)[None, None, :, :].expand(t, h, w, -1)
        angles = torch.cat([angles_t, angles_h, angles_w] * 2, dim=-1)  # (t, h, w, head_dim)
        angles = angles.reshape(t * h * w, 1, -1)
        return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotates x (B, S, H, D) by the angles of `rope`, computing in float32 and returning x's dtype."""
    cos, sin = rope
    x32 = x.float()
    first, second = x32.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)
