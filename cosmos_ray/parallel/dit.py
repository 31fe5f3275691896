"""The DiT's velocity call spread over the ranks of a `ParallelContext`.

Every rank embeds its cfg half of the batch with the DiT's own `prepare` and keeps its slice of latent
frames (`DiTInputs.select_frames`: tokens, AdaLN embeddings and RoPE are sliced along time, the text context
only where a net's inputs say so, as the multiview net's per-view blocks; slices differ by at most one frame
when the frame count does not divide). It runs the DiT's blocks on the slice with
Ulysses self-attention and the DiT's `finalize`, and one all-gather assembles the full velocity on
every rank.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.distributed as dist

from cosmos_ray.models.dit import DiTInputs, MiniTrainDiT
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

    def __call__(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        crossattn_emb: torch.Tensor,
        fps: float | None = None,
        padding_mask: torch.Tensor | None = None,
        condition_mask: torch.Tensor | None = None,
        **net_inputs: torch.Tensor,
    ) -> torch.Tensor:
        """Velocity (B, C, T, H, W); see `MiniTrainDiT.forward` for the arguments.

        `net_inputs`: the keyword inputs a subclass's `prepare` takes besides the base ones (the multiview net's
        `view_indices`, the action net's `actions`), each with the batch first (split over the cfg halves like x)
        or broadcast over it."""
        cfg = self.dit.cfg
        batch, _, frames, _, _ = x.shape
        layout = self.ctx.layout_for(cfg.num_heads, frames // cfg.patch_temporal, batch)
        rows_per_half = batch // layout.config.cfg_degree
        rows = slice(layout.cfg_rank * rows_per_half, (layout.cfg_rank + 1) * rows_per_half)
        x, timesteps, crossattn_emb = (_rows(tensor, rows, batch) for tensor in (x, timesteps, crossattn_emb))
        padding_mask, condition_mask = (
            None if mask is None else _rows(mask, rows, batch) for mask in (padding_mask, condition_mask)
        )
        net_inputs = {name: _rows(tensor, rows, batch) for name, tensor in net_inputs.items()}

        prepare: Callable[..., DiTInputs] = self.dit.prepare  # a subclass's, with its own keywords
        inputs = prepare(x, timesteps, crossattn_emb, fps, padding_mask, condition_mask, **net_inputs)
        frames_per_rank = split_sizes(inputs.grid[0], layout.config.ulysses_degree)
        velocity = self._run_slice(inputs, layout, frames_per_rank)  # (B/cfg, C, T_i, H, W)
        return self._gather(velocity, layout, [n * cfg.patch_temporal for n in frames_per_rank])

    def _run_slice(self, inputs: DiTInputs, layout: LayoutGroups, frames_per_rank: list[int]) -> torch.Tensor:
        """The DiT's blocks and final layer on this rank's latent frames, attending over all of them."""
        start = sum(frames_per_rank[: layout.ulysses_rank])
        local = inputs.select_frames(start, start + frames_per_rank[layout.ulysses_rank])
        tokens_per_frame = inputs.grid[1] * inputs.grid[2]
        seq_lens = [n * tokens_per_frame for n in frames_per_rank]
        tokens = local.x  # (B/cfg, T_i, H*W, D)
        for index, block in enumerate(self.dit.blocks):
            self_attention = partial(
                ulysses_attention,
                group=layout.ulysses_group,
                seq_lens=seq_lens,
                attend=self.dit.self_attention_fn(index),
            )
            tokens = block(
                tokens,
                local.emb,
                local.adaln_lora,
                local.context,
                local.rope,
                self_attention,
                self.dit.attention_fn,
                **local.block_conditioning(),
            )
        return self.dit.finalize(tokens, local)

    def _gather(self, velocity: torch.Tensor, layout: LayoutGroups, frames_per_rank: list[int]) -> torch.Tensor:
        """Assembles every rank's (B/cfg, C, T_i, H, W) piece into the full (B, C, T, H, W) velocity.

        Pieces are padded to the longest slice for one all-gather, then cut back and concatenated.
        """
        if self.ctx.world_size == 1:
            return velocity
        longest = max(frames_per_rank)
        padded = velocity.new_zeros(*velocity.shape[:2], longest, *velocity.shape[3:])
        padded[:, :, : velocity.shape[2]] = velocity
        pieces = padded.new_empty(self.ctx.world_size * padded.shape[0], *padded.shape[1:])
        dist.all_gather_into_tensor(pieces, padded)  # rank order: cfg half, then frame slice
        pieces = pieces.view(layout.config.cfg_degree, layout.config.ulysses_degree, *padded.shape)
        halves = [
            torch.cat([pieces[half, j, :, :, :frames] for j, frames in enumerate(frames_per_rank)], dim=2)
            for half in range(layout.config.cfg_degree)
        ]
        return torch.cat(halves, dim=0)


def split_sizes(size: int, parts: int) -> list[int]:
    """`size` split into `parts` contiguous pieces as equal as possible, the longer ones first."""
    return [size // parts + (1 if i < size % parts else 0) for i in range(parts)]


def _rows(tensor: torch.Tensor, rows: slice, batch: int) -> torch.Tensor:
    """`tensor`'s rows of this cfg half; tensors broadcast over the batch (leading 1) unchanged."""
    if tensor.shape[0] != batch:
        return tensor
    return tensor[rows]
