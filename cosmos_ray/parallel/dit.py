"""The DiT's velocity call spread over the ranks of a `ParallelContext`.

Every rank embeds the whole input with the DiT's own `prepare`, keeps its cfg half of the batch and its
slice of latent frames (tokens, AdaLN embeddings and RoPE are sliced along time; the text context is
not), runs the DiT's blocks with Ulysses self-attention, applies the DiT's `finalize` to its slice, and
one all-gather assembles the full velocity on every rank.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.distributed as dist

from cosmos_ray.models.dit import MiniTrainDiT
from cosmos_ray.parallel.context import LayoutGroups, ParallelContext
from cosmos_ray.parallel.ulysses import ulysses_attention


class ParallelDiT:
    """A drop-in for `MiniTrainDiT.__call__` (same arguments, same full output on every rank).

    A batch of 2 (conditional + unconditional pass) is split over the cfg halves when the layout has
    two; latent frames are split over the Ulysses ranks of each half. Every rank must make the same call.
    """

    def __init__(self, dit: MiniTrainDiT, ctx: ParallelContext):
        self.dit = dit
        self.ctx = ctx

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor, crossattn_emb: torch.Tensor,
                 fps: float | None = None, padding_mask: torch.Tensor | None = None,
                 condition_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity (B, C, T, H, W); see `MiniTrainDiT.forward` for the arguments."""
        cfg = self.dit.cfg
        batch, _, frames, _, _ = x.shape
        layout = self.ctx.layout_for(cfg.num_heads, frames // cfg.patch_temporal, batch)
        rows = _shard(batch, layout.config.cfg_degree, layout.cfg_rank)
        x, timesteps, crossattn_emb, padding_mask, condition_mask = (
            _rows(tensor, rows, batch) for tensor in (x, timesteps, crossattn_emb, padding_mask, condition_mask))

        inputs = self.dit.prepare(x, timesteps, crossattn_emb, fps, padding_mask, condition_mask)
        local_frames = _shard(inputs.grid[0], layout.config.ulysses_degree, layout.ulysses_rank)
        local = inputs.select_frames(local_frames.start, local_frames.stop)
        self_attention = partial(ulysses_attention, group=layout.ulysses_group, backend=self.dit.attention_backend)
        tokens = local.x  # (B/cfg, T/u, H*W, D)
        for block in self.dit.blocks:
            tokens = block(tokens, local.emb, local.adaln_lora, local.context, local.rope,
                           self_attention, self.dit.attention_fn)
        return self._gather(self.dit.finalize(tokens, local), layout)  # (B, C, T, H, W)

    def _gather(self, velocity: torch.Tensor, layout: LayoutGroups) -> torch.Tensor:
        """Assembles every rank's (B/cfg, C, T/u, H, W) piece into the full (B, C, T, H, W) velocity."""
        if self.ctx.world_size == 1:
            return velocity
        cfg_degree, ulysses_degree = layout.config.cfg_degree, layout.config.ulysses_degree
        b, c, t, h, w = velocity.shape
        pieces = velocity.new_empty(self.ctx.world_size * b, c, t, h, w)
        dist.all_gather_into_tensor(pieces, velocity.contiguous())  # rank order: cfg half, then frame slice
        pieces = pieces.view(cfg_degree, ulysses_degree, b, c, t, h, w)
        return pieces.permute(0, 2, 3, 1, 4, 5, 6).reshape(cfg_degree * b, c, ulysses_degree * t, h, w)


def _shard(size: int, parts: int, index: int) -> slice:
    """The `index`-th of `parts` equal contiguous pieces of range(size)."""
    step = size // parts
    return slice(index * step, (index + 1) * step)


def _rows(tensor: torch.Tensor | None, rows: slice, batch: int) -> torch.Tensor | None:
    """`tensor`'s rows of this cfg half; None and tensors broadcast over the batch (leading 1) unchanged."""
    if tensor is None or tensor.shape[0] != batch:
        return tensor
    return tensor[rows]
