"""The VAE decode spread over a group, so that every rank ends up holding the whole video.

One video (`decode_spread`): each rank decodes a strip of latent columns (the same pixels a whole decode gives
there), then the strips are gathered. Several videos decoded each on its own (`decode_views_spread`, the multiview
model's cameras): each rank decodes a run of whole videos, then those are gathered. Whole views beat column strips
there: a strip decode runs the decoder's trunk (its first layers and the middle's attention, which see whole
frames) on every rank, while a whole view is decoded once, by one rank, exactly as one process decodes it; the
price is granularity (7 views on 2 ranks: 4 and 3), on a decode that is a small part of a 35-step multiview
sample (docs/performance.md, "Multiview", works it out from the FLOPs)."""

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


def rank_views(views: int, ctx: ParallelContext) -> slice:
    """This rank's run of `views` videos (contiguous, as equal as possible, the longer runs first; empty on the
    last ranks of a group larger than `views`)."""
    counts = split_sizes(views, ctx.world_size)
    start = sum(counts[: ctx.rank])
    return slice(start, start + counts[ctx.rank])


def decode_views_spread(vae: WanVAE, latents: torch.Tensor, ctx: ParallelContext | None) -> torch.Tensor:
    """Latents (V, C, T, h, w) of V videos -> the videos (V, 3, T', H, W), each decoded on its own (one at a time:
    the decode's memory is one video's), on every rank of `ctx` (every rank must call this), each rank decoding
    its `rank_views`; all of them in one process."""
    views = latents.shape[0]
    if ctx is None or ctx.world_size == 1:
        return torch.cat([vae.decode(latents[v : v + 1]) for v in range(views)])
    counts = split_sizes(views, ctx.world_size)
    mine = rank_views(views, ctx)
    r, s = vae.cfg.temporal_compression, vae.cfg.spatial_compression
    _, _, t, h, w = latents.shape
    decoded = latents.new_zeros(counts[0], 3, 1 + r * (t - 1), h * s, w * s)  # padded to the longest run
    for i, v in enumerate(range(mine.start, mine.stop)):
        decoded[i] = vae.decode(latents[v : v + 1])[0]
    gathered = decoded.new_empty(ctx.world_size * counts[0], *decoded.shape[1:])  # (N * longest, 3, T', H, W)
    dist.all_gather_into_tensor(gathered, decoded)
    runs = gathered.unflatten(0, (ctx.world_size, counts[0]))
    return torch.cat([run[:count] for run, count in zip(runs, counts)])
