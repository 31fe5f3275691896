"""Ulysses attention: exact self-attention over a sequence sharded across the ranks of a group.

Each rank holds a contiguous chunk of the sequence with all heads. One all-to-all turns that into the
whole sequence with 1/u of the heads, attention runs locally per head, and a second all-to-all turns
the result back into the rank's chunk with all heads. Rank order in the group is sequence order.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from cosmos_ray.models.attention import attention


def ulysses_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: dist.ProcessGroup,
                      backend: str = "auto") -> torch.Tensor:
    """Attention of the local query chunk over the whole sharded sequence; (B, S/u, H, D) in and out.

    `q`, `k`, `v` are this rank's chunk of the sequence (the same length on every rank); H must divide
    by the group size u. `backend` is passed to `cosmos_ray.models.attention.attention`.
    """
    u = dist.get_world_size(group)
    if u == 1:
        return attention(q, k, v, backend=backend)
    heads = q.shape[2]
    if heads % u:
        raise ValueError(f"ulysses_attention: {heads} heads cannot be split over a group of {u} ranks")
    qkv = torch.stack([q, k, v])                                     # (3, B, S/u, H, D)
    qkv = _all_to_all(qkv, scatter_dim=3, gather_dim=2, group=group)  # (3, B, S, H/u, D)
    out = attention(qkv[0], qkv[1], qkv[2], backend=backend)          # (B, S, H/u, D)
    return _all_to_all(out, scatter_dim=1, gather_dim=2, group=group)  # (B, S/u, H, D)


def _all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int, group: dist.ProcessGroup) -> torch.Tensor:
    """Splits `x` into u chunks along `scatter_dim`, sends chunk j to rank j, and concatenates what every
    rank sent along `gather_dim` (in rank order)."""
    u = dist.get_world_size(group)
    chunks = x.unflatten(scatter_dim, (u, -1)).movedim(scatter_dim, 0).contiguous()  # (u, ..., x/u, ...)
    received = torch.empty_like(chunks)
    dist.all_to_all_single(received, chunks, group=group)
    # received[j] is rank j's chunk: move the rank axis in front of gather_dim and merge the two.
    return received.movedim(0, gather_dim).flatten(gather_dim, gather_dim + 1)
