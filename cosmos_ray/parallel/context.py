"""The process groups of one GPU group, created once per rank and passed around explicitly.

`ParallelContext.init` joins the rendezvous (torch.distributed's default group of this process: the
whole GPU group, over which the final gather of a forward runs) and creates the Ulysses sub-groups of
every layout its world size allows, so each call can use the layout that fits its shape (guidance
parallel for guidance > 0, pure Ulysses for guidance 0). Nothing is stored in module globals: a Ray
actor per rank holds its context, and separate GPU groups are separate processes with separate
rendezvous addresses; `destroy()` lets a process join another group afterwards.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cosmos_ray.parallel.config import ParallelConfig, ParallelLayoutError


@dataclass(frozen=True)
class LayoutGroups:
    """What one rank needs to run one layout: its place in the layout and the groups it belongs to."""

    config: ParallelConfig
    cfg_rank: int  # which cfg half (batch half) this rank computes
    ulysses_rank: int  # which slice of latent frames this rank holds
    ulysses_group: dist.ProcessGroup  # the ranks of this cfg half, in latent-frame order


class ParallelContext:
    """One rank's view of its group: rank, world size, device and the process groups of each layout."""

    def __init__(
        self,
        rank: int,
        world_size: int,
        device: torch.device,
        config: ParallelConfig | None,
        layouts: dict[ParallelConfig, LayoutGroups],
        owns_default_group: bool,
    ):
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.config = config
        self.layouts = layouts
        self._owns_default_group = owns_default_group

    @classmethod
    def init(
        cls,
        rank: int,
        world_size: int,
        init_method: str = "env://",
        backend: str = "nccl",
        config: ParallelConfig | None = None,
        device: str | torch.device | None = None,
        timeout: datetime.timedelta | None = None,
    ) -> ParallelContext:
        """Joins the group at `init_method` (e.g. "tcp://10.0.0.1:29500", "file:///tmp/rdzv", "env://").

        `config` fixes the layout; None chooses it per call from the shape (see `layout_for`).
        `backend` is "nccl" (one CUDA device per rank, `device` defaults to the current one) or "gloo" (CPU).
        Every rank of the group must call this with the same world size, config and init_method.
        """
        if config is not None and config.world_size != world_size:
            raise ParallelLayoutError(f"layout {config} needs {config.world_size} ranks, the group has {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a group of {world_size}")
        device = _resolve_device(backend, device)
        owns_default_group = not dist.is_initialized()
        if owns_default_group:
            dist.init_process_group(
                backend,
                init_method=init_method,
                rank=rank,
                world_size=world_size,
                timeout=timeout,
                device_id=device if device.type == "cuda" else None,
            )
        elif (dist.get_rank(), dist.get_world_size()) != (rank, world_size):
            raise RuntimeError(
                f"this process already belongs to a group as rank {dist.get_rank()} of "
                f"{dist.get_world_size()}, not rank {rank} of {world_size}"
            )
        configs = [config] if config is not None else ParallelConfig.layouts(world_size)
        layouts = {c: _create_layout_groups(c, rank) for c in configs}
        return cls(rank, world_size, device, config, layouts, owns_default_group)

    def layout_for(self, num_heads: int, latent_frames: int, batch_size: int) -> LayoutGroups:
        """The groups of the fixed layout (checked against the shape), or of the best layout for the shape."""
        if self.config is not None:
            self.config.check(num_heads, latent_frames, batch_size)
            return self.layouts[self.config]
        return self.layouts[ParallelConfig.for_batch(self.world_size, num_heads, latent_frames, batch_size)]

    def any_rank(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any rank (a collective: every rank calls it at the same point),
        so that all ranks take the same branch, e.g. stopping a generation at the same step."""
        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def destroy(self) -> None:
        """Destroys the sub-groups, and the default group if this context created it."""
        for groups in self.layouts.values():
            dist.destroy_process_group(groups.ulysses_group)
        self.layouts = {}
        if self._owns_default_group and dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self) -> ParallelContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def _resolve_device(backend: str, device: str | torch.device | None) -> torch.device:
    if backend == "gloo":
        return torch.device(device or "cpu")
    if backend == "nccl":
        device = torch.device(device) if device is not None else torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        return device
    raise ValueError(f"backend must be 'nccl' or 'gloo', got {backend!r}")


def _create_layout_groups(config: ParallelConfig, rank: int) -> LayoutGroups:
    """Creates the Ulysses groups of `config` (every rank creates every group, in the same order)."""
    u = config.ulysses_degree
    blocks = [list(range(half * u, (half + 1) * u)) for half in range(config.cfg_degree)]
    ulysses_group, _ = dist.new_subgroups_by_enumeration(blocks)
    return LayoutGroups(config=config, cfg_rank=rank // u, ulysses_rank=rank % u, ulysses_group=ulysses_group)
