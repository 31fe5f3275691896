"""The VAE decode spread over a group: each rank decodes a strip of latent columns (the same pixels a whole
decode gives there), then the strips are gathered, so every rank holds the whole video."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from cosmos_ray.models.vae import WanVAE
from cosmos_ray.parallel.context import ParallelContext
from cosmos_ray.parallel.dit import split_sizes


def rank_columns(width: int, ctx: ParallelContext) -> slice:
    """This rank's latent columns of a latent frame `width` columns wide (contiguous, the longer strips first)."""
    widths = split_sizes(width, ctx.world_size)
    start = sum(widths[: ctx.rank])
    return slice(start, start + widths[ctx.rank])


def gather_columns(strip: torch.Tensor, width: int, scale: int, ctx: ParallelContext) -> torch.Tensor:
    """Every rank's decoded strip (1, 3, T, H, w_rank * scale) -> the video (1, 3, T, H, width * scale), on
    every rank; `width` is the latent width and `scale` the VAE's spatial compression."""
    widths = split_sizes(width, ctx.world_size)  # latent columns per rank
    strip = F.pad(strip, (0, widths[0] * scale - strip.shape[-1]))  # equal shapes for the all-gather
    strips = strip.new_empty(ctx.world_size, *strip.shape[1:])  # (N, 3, T, H, W / N)
    dist.all_gather_into_tensor(strips, strip.contiguous())
    video = torch.cat([s[..., : w * scale] for s, w in zip(strips, widths)], dim=-1)  # (3, T, H, W)
    return video[None]


def decode_spread(vae: WanVAE, latents: torch.Tensor, ctx: ParallelContext | None) -> torch.Tensor:
    """`vae.decode(latents)`: the whole video (1, 3, T, H, W) on every rank of `ctx`, each rank decoding its strip
    of columns (every rank must call this); a plain decode without a group of several ranks."""
    if ctx is None or ctx.world_size == 1:
        return vae.decode(latents)
    strip = vae.decode(latents, columns=rank_columns(latents.shape[-1], ctx))  # (1, 3, T, H, this rank's W)
    return gather_columns(strip, latents.shape[-1], vae.cfg.spatial_compression, ctx)
