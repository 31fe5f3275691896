"""Context and guidance parallelism on CPU with gloo: every layout must match the single-process result.

One spawn per world size runs every distributed case; each rank saves what it computed, and the tests
compare that with the same computation done here, in one process.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from cosmos_ray.core.attention_precision import AttentionPrecision
from cosmos_ray.models import attention_8bit
from cosmos_ray.models.attention import attention
from cosmos_ray.models.attention_8bit import QuantizedSelfAttention
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
from cosmos_ray.parallel.config import ParallelConfig, ParallelLayoutError
from cosmos_ray.parallel.context import ParallelContext
from cosmos_ray.parallel.dit import ParallelDiT, split_sizes
from cosmos_ray.parallel.ulysses import ulysses_attention
from cosmos_ray.sampling.base import HeldFrames
from cosmos_ray.sampling.guided import SamplerConfig, initial_noise, sample

ATTENTION_FRAMES = (4, 5)  # an even and an uneven split over 2 and 4 ranks
TOKENS_PER_FRAME = 3
BATCH, HEADS, HEAD_DIM = 2, 4, 8


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# ---------------------------------------------------------------------------------------- layouts (no spawn)


def test_auto_prefers_guidance_parallel_when_there_are_two_passes():
    assert ParallelConfig.auto(2, num_heads=16, latent_frames=24, guidance=7) == ParallelConfig(2, 1)
    assert ParallelConfig.auto(8, num_heads=16, latent_frames=24, guidance=7) == ParallelConfig(2, 4)
    assert ParallelConfig.auto(1, num_heads=16, latent_frames=24, guidance=7) == ParallelConfig(1, 1)


def test_auto_uses_ulysses_over_everything_without_guidance_or_when_the_cfg_split_does_not_fit():
    assert ParallelConfig.auto(2, num_heads=16, latent_frames=24, guidance=0) == ParallelConfig(1, 2)
    assert ParallelConfig.auto(8, num_heads=16, latent_frames=21, guidance=0) == ParallelConfig(1, 8)
    assert ParallelConfig.auto(4, num_heads=4, latent_frames=3, guidance=7) == ParallelConfig(2, 2)


def test_layout_error_names_the_dimension_and_the_world_sizes_that_work():
    with pytest.raises(ParallelLayoutError, match=r"16 attention heads .* ulysses_degree 3") as info:
        ParallelConfig.auto(3, num_heads=16, latent_frames=24, guidance=7)
    assert "World sizes that work: [1, 2, 4, 8, 16, 32]" in str(info.value)
    with pytest.raises(ParallelLayoutError, match=r"1 latent frames cannot be split over ulysses_degree 2") as info:
        ParallelConfig.auto(4, num_heads=16, latent_frames=1, guidance=7)
    assert "World sizes that work: [1, 2]" in str(info.value)
    with pytest.raises(ParallelLayoutError, match="batch of 1 cannot be split over 2 cfg halves"):
        ParallelConfig(2, 1).check(num_heads=16, latent_frames=24, batch_size=1)
    with pytest.raises(ParallelLayoutError, match="cfg_degree must be 1 or 2"):
        ParallelConfig(4, 1)


def test_split_sizes_are_contiguous_and_as_equal_as_possible():
    assert split_sizes(24, 4) == [6, 6, 6, 6]
    assert split_sizes(21, 4) == [6, 5, 5, 5]
    assert split_sizes(5, 2) == [3, 2]


def test_init_rejects_a_config_for_another_world_size():
    with pytest.raises(ParallelLayoutError, match="needs 4 ranks, the group has 2"):
        ParallelContext.init(0, 2, "file:///nonexistent", backend="gloo", config=ParallelConfig(2, 2))


# ------------------------------------------------------------------------------- distributed cases (spawned)


def _attention_inputs(frames: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (B, frames * TOKENS_PER_FRAME, H, D) of one cfg half."""
    gen = torch.Generator().manual_seed(seed)
    shape = (BATCH, frames * TOKENS_PER_FRAME, HEADS, HEAD_DIM)
    q, k, v = (torch.randn(shape, generator=gen) for _ in range(3))
    return q, k, v


def _run_attention_cases(ctx: ParallelContext) -> dict[str, torch.Tensor]:
    """Ulysses attention under every layout, frames split as ParallelDiT splits them; each cfg half
    attends over its own inputs."""
    results = {}
    for config, groups in ctx.layouts.items():
        for frames in ATTENTION_FRAMES:
            q, k, v = _attention_inputs(frames, seed=groups.cfg_rank)
            seq_lens = [n * TOKENS_PER_FRAME for n in split_sizes(frames, config.ulysses_degree)]
            start = sum(seq_lens[: groups.ulysses_rank])
            local = slice(start, start + seq_lens[groups.ulysses_rank])
            out = ulysses_attention(q[:, local], k[:, local], v[:, local], groups.ulysses_group, seq_lens)
            results[f"attention/{config}/{frames}/rank{ctx.rank}"] = out
    return results


def _tiny_dit() -> MiniTrainDiT:
    torch.manual_seed(0)
    return MiniTrainDiT(DiTConfig.preset("tiny")).eval().requires_grad_(False)


def _dit_inputs(case: str) -> dict[str, Any]:
    """DiT call arguments at 8x12 latents (64x96 pixels), text width 96 (the tiny preset).

    text2world: cond + uncond (batch 2), 4 latent frames, one timestep per sample.
    video2world: cond + uncond, 5 latent frames (an uneven split), the first conditional (condition
    mask 1, timestep near 0), per-frame timesteps, a padding mask.
    """
    gen = torch.Generator().manual_seed(1)
    batch, frames = {"text2world": (2, 4), "video2world": (2, 5)}[case]
    args = dict(
        x=torch.randn(batch, 16, frames, 8, 12, generator=gen),
        timesteps=torch.full((batch,), 700.0),
        crossattn_emb=torch.randn(batch, 16, 96, generator=gen),
    )
    if case == "video2world":
        args["timesteps"] = torch.full((batch, frames), 700.0)
        args["timesteps"][:, 0] = 0.1
        args["condition_mask"] = torch.zeros(batch, 1, frames, 8, 12)
        args["condition_mask"][:, :, 0] = 1.0
        args["padding_mask"] = (torch.rand(1, 1, 16, 24, generator=gen) > 0.8).float()
    return args


DIT_CASES = ("text2world", "video2world")
SAMPLE_STEPS = 3


def _sample(velocity_model, case: str, guidance: int) -> torch.Tensor:
    """A short run of the sampler over 5 latent frames (an uneven split): text2world from noise alone,
    video2world with the first latent frame held as conditioning."""
    gen = torch.Generator().manual_seed(2)
    prompt, negative = torch.randn(2, 1, 16, 96, generator=gen)
    conditional = torch.randn(1, 16, 1, 8, 12, generator=gen) if case == "video2world" else None
    return sample(
        velocity_model,
        initial_noise(0, (1, 16, 5, 8, 12)),
        prompt,
        negative,
        config=SamplerConfig.preset("post-trained"),
        num_steps=SAMPLE_STEPS,
        guidance=guidance,
        held=None if conditional is None else HeldFrames.leading(conditional, 5),
    )


# One group serving specs with and without guidance: the layout is chosen per call.
MIXED_SAMPLES = (("text2world", 0), ("video2world", 7))


STAND_IN_KERNEL = ("tests.test_attention_precision", "halved_query_attention")


def _with_stand_in_kernel(dit: MiniTrainDiT) -> MiniTrainDiT:
    """`dit` with its self-attention on the "int8" kernel, every block, this evaluation; where it is the stand-in
    of tests/test_attention_precision.py (exact attention of q / 2: head-local, so Ulysses must reproduce it)."""
    dit.quantized_attention = QuantizedSelfAttention(AttentionPrecision("int8"))
    dit.quantized_attention.evaluation(0, 1)
    return dit


def _run_fixed_layout_cases(ctx: ParallelContext, dit: MiniTrainDiT) -> dict[str, torch.Tensor]:
    """Velocities and guided sampler runs of every case under the context's fixed layout; the velocities also
    with the 8-bit kernel in the self-attention."""
    velocity = ParallelDiT(dit, ctx)
    results = {}
    for case in DIT_CASES:
        results[f"dit/{ctx.config}/{case}/rank{ctx.rank}"] = velocity(**_dit_inputs(case))
        results[f"latents/{ctx.config}/{case}/rank{ctx.rank}"] = _sample(velocity, case, guidance=7)
        quantized = ParallelDiT(_with_stand_in_kernel(_tiny_dit()), ctx)
        results[f"dit8/{ctx.config}/{case}/rank{ctx.rank}"] = quantized(**_dit_inputs(case))
    return results


def _worker(rank: int, world_size: int, out_dir: str) -> None:
    """Every case of one world size: attention and mixed-guidance sampler runs with the layout chosen
    per call, then the DiT cases under each fixed layout (one context after the other)."""
    torch.set_num_threads(1)
    dit = _tiny_dit()
    init = partial(ParallelContext.init, rank, world_size, backend="gloo")
    attention_8bit.KERNELS["int8"] = STAND_IN_KERNEL  # this spawned process only
    with init(f"file://{out_dir}/rendezvous-auto") as ctx:
        results = _run_attention_cases(ctx)
        for case, guidance in MIXED_SAMPLES:
            results[f"latents/auto/{case}/{guidance}/rank{rank}"] = _sample(ParallelDiT(dit, ctx), case, guidance)
    for i, config in enumerate(ParallelConfig.layouts(world_size)):
        with init(f"file://{out_dir}/rendezvous-{i}", config=config) as ctx:
            results.update(_run_fixed_layout_cases(ctx, dit))
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module", params=[2, 4], ids=lambda n: f"N{n}")
def spawned(request, tmp_path_factory):
    """Runs every distributed case once for a world size; returns (world_size, results of all ranks)."""
    world_size = request.param
    out_dir = tmp_path_factory.mktemp(f"parallel_n{world_size}")
    mp.spawn(_worker, args=(world_size, str(out_dir)), nprocs=world_size)
    results = {}
    for rank in range(world_size):
        results.update(torch.load(out_dir / f"rank{rank}.pt"))
    return world_size, results


@pytest.mark.parametrize("frames", ATTENTION_FRAMES)
def test_ulysses_attention_matches_single_process_attention(spawned, frames):
    world_size, results = spawned
    for config in ParallelConfig.layouts(world_size):
        for half in range(config.cfg_degree):
            expected = attention(*_attention_inputs(frames, seed=half))
            ranks = range(half * config.ulysses_degree, (half + 1) * config.ulysses_degree)
            got = torch.cat([results[f"attention/{config}/{frames}/rank{r}"] for r in ranks], dim=1)
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


@pytest.mark.parametrize("case", DIT_CASES)
def test_every_layout_gives_the_single_process_velocity_with_an_8bit_kernel(spawned, case, monkeypatch):
    world_size, results = spawned
    monkeypatch.setitem(attention_8bit.KERNELS, "int8", STAND_IN_KERNEL)
    expected = _with_stand_in_kernel(_tiny_dit())(**_dit_inputs(case))
    assert rel_err(expected, _tiny_dit()(**_dit_inputs(case))) > 1e-3  # the kernel was used: another velocity
    for config in ParallelConfig.layouts(world_size):
        for rank in range(world_size):
            assert rel_err(results[f"dit8/{config}/{case}/rank{rank}"], expected) < 1e-5, f"{config}, rank {rank}"


@pytest.mark.parametrize("case", DIT_CASES)
def test_every_layout_gives_the_single_process_latents(spawned, case):
    world_size, results = spawned
    expected = _sample(_tiny_dit(), case, guidance=7)
    for config in ParallelConfig.layouts(world_size):
        for rank in range(world_size):
            assert rel_err(results[f"latents/{config}/{case}/rank{rank}"], expected) < 1e-5, f"{config}, rank {rank}"


@pytest.mark.parametrize("case, guidance", MIXED_SAMPLES)
def test_layouts_chosen_per_call_give_the_single_process_latents(spawned, case, guidance):
    world_size, results = spawned
    expected = _sample(_tiny_dit(), case, guidance)
    for rank in range(world_size):
        assert rel_err(results[f"latents/auto/{case}/{guidance}/rank{rank}"], expected) < 1e-5, f"rank {rank}"
