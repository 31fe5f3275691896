"""Ulysses attention: exact self-attention over a sequence sharded across the ranks of a group.

Each rank holds a contiguous chunk of the sequence with all heads. One all-to-all turns that into the
whole sequence with 1/u of the heads, attention runs locally on those heads, and a second all-to-all
turns the result back into the rank's chunk with all heads. Rank order in the group is sequence order;
chunks may differ in length (a number of latent frames that does not divide evenly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist

from cosmos_ray.models.attention import AttentionFn, attention


def ulysses_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    group: dist.ProcessGroup,
    seq_lens: Sequence[int] | None = None,
    attend: AttentionFn = attention,
) -> torch.Tensor:
    """Attention of the local query chunk over the whole sharded sequence; (B, S_i, H, D) in and out.

    `q`, `k`, `v` are this rank's chunk of the sequence; `seq_lens[j]` is the chunk length of rank j of
    `group` (default: every rank holds as many tokens as this one). H must divide by the group size.
    `attend` computes the local attention (default: `cosmos_ray.models.attention.attention`; the DiT passes
    its kernel of the block, bf16 or 8-bit).
    """
    u, rank = dist.get_world_size(group), dist.get_rank(group)
    if u == 1:
        return attend(q, k, v)
    batch, length, heads, head_dim = q.shape
    if heads % u:
        raise ValueError(f"ulysses_attention: {heads} heads cannot be split over a group of {u} ranks")
    seq_lens = [length] * u if seq_lens is None else list(seq_lens)
    if len(seq_lens) != u or seq_lens[rank] != length:
        raise ValueError(f"ulysses_attention: rank {rank} holds {length} tokens, seq_lens says {seq_lens}")
    head_split = [heads // u] * u
    qkv = torch.stack([q, k, v])  # (3, B, S_i, H, D)
    qkv = _all_to_all(qkv, 3, head_split, 2, seq_lens, group)  # (3, B, S, H/u, D)
    out = attend(qkv[0], qkv[1], qkv[2])  # (B, S, H/u, D)
    return _all_to_all(out, 1, seq_lens, 2, head_split, group)  # (B, S_i, H, D)


def _all_to_all(
    x: torch.Tensor,
    scatter_dim: int,
    scatter_sizes: list[int],
    gather_dim: int,
    gather_sizes: list[int],
    group: dist.ProcessGroup,
) -> torch.Tensor:
    """Sends rank j the j-th piece of `x` along `scatter_dim` (pieces of `scatter_sizes`) and concatenates,
    in rank order along `gather_dim`, the pieces every rank sent here (rank j's has `gather_sizes[j]` there).
    """
    rank = dist.get_rank(group)
    send = x.movedim(scatter_dim, 0).contiguous()  # each piece is a contiguous run of rows
    row_numel = math.prod(send.shape[1:])
    # In `send`'s dim order, where gather_dim went, and the shape of what rank j sends here.
    moved_gather_dim = gather_dim + 1 if gather_dim < scatter_dim else gather_dim
    recv_shapes = []
    for size in gather_sizes:
        shape = [scatter_sizes[rank], *send.shape[1:]]
        shape[moved_gather_dim] = size
        recv_shapes.append(shape)
    recv_numels = [math.prod(shape) for shape in recv_shapes]
    received = send.new_empty(sum(recv_numels))
    dist.all_to_all_single(received, send.view(-1), recv_numels, [n * row_numel for n in scatter_sizes], group=group)
    pieces = [
        piece.view(shape).movedim(0, scatter_dim) for piece, shape in zip(received.split(recv_numels), recv_shapes)
    ]
    return torch.cat(pieces, dim=gather_dim)
