"""Context and guidance parallelism on CPU with gloo: every layout must match the single-process result.

One spawn per world size runs every distributed case; each rank saves what it computed, and the tests
compare that with the same computation done here, in one process.
"""

from __future__ import annotations

import os
from functools import partial

import pytest
import torch
import torch.multiprocessing as mp

from cosmos_ray.models.attention import attention
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
from cosmos_ray.parallel.config import ParallelConfig, ParallelLayoutError
from cosmos_ray.parallel.context import ParallelContext
from cosmos_ray.parallel.dit import ParallelDiT
from cosmos_ray.parallel.ulysses import ulysses_attention

ATTN_SHAPE = (2, 4, 4, 8)   # batch, latent frames, heads, head dim
TOKENS_PER_FRAME = 5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# ---------------------------------------------------------------------------------------- layouts (no spawn)

def test_auto_prefers_guidance_parallel_when_there_are_two_passes():
    assert ParallelConfig.auto(2, num_heads=16, latent_frames=24, guidance=7) == ParallelConfig(2, 1)
    assert ParallelConfig.auto(8, num_heads=16, latent_frames=24, guidance=7) == ParallelConfig(2, 4)
    assert ParallelConfig.auto(2, num_heads=16, latent_frames=24, guidance=0) == ParallelConfig(1, 2)
    assert ParallelConfig.auto(1, num_heads=16, latent_frames=24, guidance=7) == ParallelConfig(1, 1)


def test_auto_falls_back_to_ulysses_when_the_cfg_split_does_not_fit():
    assert ParallelConfig.auto(4, num_heads=2, latent_frames=4, guidance=7) == ParallelConfig(2, 2)
    assert ParallelConfig.auto(4, num_heads=4, latent_frames=4, guidance=0) == ParallelConfig(1, 4)


def test_layout_error_names_the_dimension_and_the_world_sizes_that_work():
    with pytest.raises(ParallelLayoutError, match=r"16 attention heads .* ulysses_degree 3") as info:
        ParallelConfig.auto(3, num_heads=16, latent_frames=24, guidance=7)
    assert "World sizes that work: [1, 2, 4, 8, 16]" in str(info.value)
    with pytest.raises(ParallelLayoutError, match=r"20 latent frames .* ulysses_degree 8") as info:
        ParallelConfig.auto(8, num_heads=16, latent_frames=20, guidance=0)
    assert "World sizes that work: [1, 2, 4]" in str(info.value)
    with pytest.raises(ParallelLayoutError, match="batch of 1 cannot be split over 2 cfg halves"):
        ParallelConfig(2, 1).check(num_heads=16, latent_frames=24, batch_size=1)
    with pytest.raises(ParallelLayoutError, match="cfg_degree must be 1 or 2"):
        ParallelConfig(4, 1)


def test_init_rejects_a_config_for_another_world_size():
    with pytest.raises(ParallelLayoutError, match="needs 4 ranks, the group has 2"):
        ParallelContext.init(0, 2, "file:///nonexistent", backend="gloo", config=ParallelConfig(2, 2))


# ------------------------------------------------------------------------------- distributed cases (spawned)

def _attention_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of shape (B, T * tokens_per_frame, H, D) for one cfg half."""
    batch, frames, heads, dim = ATTN_SHAPE
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, frames * TOKENS_PER_FRAME, heads, dim, generator=gen) for _ in range(3))


def _run_attention_cases(ctx: ParallelContext) -> dict[str, torch.Tensor]:
    """Ulysses attention of every layout; each cfg half attends over its own inputs."""
    results = {}
    for config, groups in ctx.layouts.items():
        q, k, v = _attention_inputs(seed=groups.cfg_rank)
        chunk = q.shape[1] // config.ulysses_degree
        local = slice(groups.ulysses_rank * chunk, (groups.ulysses_rank + 1) * chunk)
        out = ulysses_attention(q[:, local], k[:, local], v[:, local], groups.ulysses_group)
        results[f"attention/{config}/rank{ctx.rank}"] = out
    return results


def _tiny_dit() -> MiniTrainDiT:
    torch.manual_seed(0)
    return MiniTrainDiT(DiTConfig.preset("tiny")).eval().requires_grad_(False)


def _dit_inputs(case: str) -> dict[str, torch.Tensor]:
    """DiT call arguments: 4 latent frames of 8x12 (64x96 pixels), text width 96 (the tiny preset).

    text2world: batch of 2 (cond + uncond), one timestep per sample. video2world: the first latent frame
    is conditional (condition mask 1, timestep near 0), per-frame timesteps, a padding mask.
    guidance0: text2world with the conditional pass only (batch of 1).
    """
    gen = torch.Generator().manual_seed(1)
    batch, frames = (1, 4) if case == "guidance0" else (2, 4)
    args = dict(x=torch.randn(batch, 16, frames, 8, 12, generator=gen),
                timesteps=torch.full((batch,), 700.0),
                crossattn_emb=torch.randn(batch, 16, 96, generator=gen))
    if case == "video2world":
        args["timesteps"] = torch.tensor([[0.1, 700.0, 700.0, 700.0]]).expand(batch, frames).contiguous()
        args["condition_mask"] = torch.zeros(batch, 1, frames, 8, 12)
        args["condition_mask"][:, :, 0] = 1.0
        args["padding_mask"] = (torch.rand(1, 1, 16, 24, generator=gen) > 0.8).float()
    return args


DIT_CASES = ("text2world", "video2world")


def _run_dit_cases(ctx: ParallelContext, dit: MiniTrainDiT, cases: tuple[str, ...]) -> dict[str, torch.Tensor]:
    velocity = ParallelDiT(dit, ctx)
    return {f"dit/{ctx.config}/{case}/rank{ctx.rank}": velocity(**_dit_inputs(case)) for case in cases}


def _worker(rank: int, world_size: int, out_dir: str) -> None:
    """Runs every case for one world size: attention and a guidance-0 DiT call with the layout chosen
    per call, then the batch-2 DiT calls under each fixed layout (one context after the other)."""
    torch.set_num_threads(1)
    dit = _tiny_dit()
    init = partial(ParallelContext.init, rank, world_size, backend="gloo")
    with init(f"file://{out_dir}/rendezvous-auto") as ctx:
        results = _run_attention_cases(ctx)
        results.update(_run_dit_cases(ctx, dit, ("guidance0",)))
    for i, config in enumerate(ParallelConfig.layouts(world_size)):
        with init(f"file://{out_dir}/rendezvous-{i}", config=config) as ctx:
            results.update(_run_dit_cases(ctx, dit, DIT_CASES))
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module", params=[2, 4], ids=lambda n: f"N{n}")
def spawned(request, tmp_path_factory):
    """Runs every distributed case once for a world size; returns (world_size, merged results of all ranks)."""
    world_size = request.param
    out_dir = tmp_path_factory.mktemp(f"parallel_n{world_size}")
    mp.spawn(_worker, args=(world_size, str(out_dir)), nprocs=world_size)
    results = {}
    for rank in range(world_size):
        results.update(torch.load(out_dir / f"rank{rank}.pt"))
    return world_size, results


def test_ulysses_attention_matches_single_process_attention(spawned):
    world_size, results = spawned
    for config in ParallelConfig.layouts(world_size):
        for half in range(config.cfg_degree):
            q, k, v = _attention_inputs(seed=half)
            expected = attention(q, k, v)
            ranks = range(half * config.ulysses_degree, (half + 1) * config.ulysses_degree)
            got = torch.cat([results[f"attention/{config}/rank{r}"] for r in ranks], dim=1)
            assert got.shape == expected.shape
            assert rel_err(got, expected) < 1e-6, f"{config}, cfg half {half}"


@pytest.mark.parametrize("case", DIT_CASES)
def test_every_layout_gives_the_single_process_velocity(spawned, case):
    world_size, results = spawned
    expected = _tiny_dit()(**_dit_inputs(case))
    for config in ParallelConfig.layouts(world_size):
        for rank in range(world_size):
            got = results[f"dit/{config}/{case}/rank{rank}"]
            assert got.shape == expected.shape
            assert rel_err(got, expected) < 1e-5, f"{config}, rank {rank}"


def test_guidance0_uses_ulysses_over_the_whole_group(spawned):
    world_size, results = spawned
    expected = _tiny_dit()(**_dit_inputs("guidance0"))
    for rank in range(world_size):
        assert rel_err(results[f"dit/None/guidance0/rank{rank}"], expected) < 1e-5, f"rank {rank}"
