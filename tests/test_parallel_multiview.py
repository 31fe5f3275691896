"""Context and guidance parallelism of the multiview model on CPU with gloo: every layout must give the velocity one
process gives (Ulysses slices that cut views included), and the spread decode the views one process decodes.

One spawn per world size (2 and 4) runs every case under every layout of it; each rank saves what it computed, and
the tests compare that with the same computation here, in one process (the tolerances of tests/test_parallel.py).
The whole tiny-preset sample in a group of two is tests/test_multiview_engine.py's.
"""

from __future__ import annotations

import dataclasses
import os
from functools import partial
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from cosmos_ray.models.multiview_dit import CONTEXT_TOKENS_PER_VIEW, MultiviewDiT, MultiviewDiTConfig
from cosmos_ray.models.vae import VAEConfig, WanVAE
from cosmos_ray.parallel.config import ParallelConfig
from cosmos_ray.parallel.context import ParallelContext
from cosmos_ray.parallel.decode import decode_views_spread, rank_views
from cosmos_ray.parallel.dit import ParallelDiT

VIEWS, STATE_T, LATENT_HW = 7, 3, (4, 6)  # 21 latent frames: every Ulysses slice of 2 and 4 ranks cuts a view
DECODED_VIEWS = (7, 3)  # 4 + 3 views on 2 ranks, 2 + 2 + 2 + 1 on 4; and fewer views than 4 ranks


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _tiny_multiview_dit() -> MultiviewDiT:
    torch.manual_seed(0)
    cfg = dataclasses.replace(MultiviewDiTConfig.preset("tiny"), state_t=STATE_T)
    return MultiviewDiT(cfg).eval().requires_grad_(False)


def _dit_inputs(case: str) -> dict[str, Any]:
    """A guided batch (cond + uncond) of 7 views: "per-view" with a context block per view, per-frame timesteps
    (each view's first frame conditional) and the views in another order than the default; "one-context" with one
    block for all views and one timestep per sample."""
    gen = torch.Generator().manual_seed(1)
    frames, width = VIEWS * STATE_T, MultiviewDiTConfig.preset("tiny").crossattn_proj_in_channels
    blocks = VIEWS if case == "per-view" else 1
    args = dict(
        x=torch.randn(2, 16, frames, *LATENT_HW, generator=gen),
        timesteps=torch.full((2,), 700.0),
        crossattn_emb=torch.randn(2, blocks * CONTEXT_TOKENS_PER_VIEW, width, generator=gen),
    )
    if case == "per-view":
        first_frames = torch.zeros(VIEWS, STATE_T, dtype=torch.bool)
        first_frames[:, 0] = True
        first_frames = first_frames.flatten()
        args["timesteps"] = torch.full((2, frames), 700.0).masked_fill(first_frames, 0.1)
        args["condition_mask"] = first_frames.float()[None, None, :, None, None].expand(2, 1, frames, *LATENT_HW)
        args["view_indices"] = torch.stack([torch.randperm(VIEWS, generator=gen)] * 2)
    return args


DIT_CASES = ("per-view", "one-context")


def _tiny_vae() -> WanVAE:
    torch.manual_seed(3)
    return WanVAE(VAEConfig.preset("tiny")).eval().requires_grad_(False)


def _view_latents(views: int) -> torch.Tensor:
    """Latents (views, 16, 2, 4, 6): views decoded each on its own."""
    return torch.randn(views, 16, 2, *LATENT_HW, generator=torch.Generator().manual_seed(4))


def _worker(rank: int, world_size: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dit, vae = _tiny_multiview_dit(), _tiny_vae()
    init = partial(ParallelContext.init, rank, world_size, backend="gloo")
    results: dict[str, Any] = {}
    for i, config in enumerate(ParallelConfig.layouts(world_size)):
        with init(f"file://{out_dir}/rendezvous-{i}", config=config) as ctx:
            velocity = ParallelDiT(dit, ctx)
            for case in DIT_CASES:
                results[f"dit/{config}/{case}/rank{rank}"] = velocity(**_dit_inputs(case))
            if i == 0:
                for views in DECODED_VIEWS:
                    results[f"decode/{views}/rank{rank}"] = decode_views_spread(vae, _view_latents(views), ctx)
                    results[f"views/{views}/rank{rank}"] = rank_views(views, ctx)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module", params=[2, 4], ids=lambda n: f"N{n}")
def spawned(request, tmp_path_factory):
    """Runs every distributed case once for a world size; returns (world_size, results of all ranks)."""
    world_size = request.param
    out_dir = tmp_path_factory.mktemp(f"parallel_multiview_n{world_size}")
    mp.spawn(_worker, args=(world_size, str(out_dir)), nprocs=world_size)
    results = {}
    for rank in range(world_size):
        results.update(torch.load(out_dir / f"rank{rank}.pt", weights_only=False))
    return world_size, results


@pytest.mark.parametrize("case", DIT_CASES)
def test_every_layout_gives_the_single_process_multiview_velocity(spawned, case):
    world_size, results = spawned
    expected = _tiny_multiview_dit()(**_dit_inputs(case))
    for config in ParallelConfig.layouts(world_size):
        for rank in range(world_size):
            got = results[f"dit/{config}/{case}/rank{rank}"]
            assert got.shape == expected.shape
            assert rel_err(got, expected) < 1e-5, f"{config}, rank {rank}"


def test_the_view_order_and_contexts_reach_the_parallel_velocity():
    """The cases above would pass with inputs the net ignored: the view order and the context blocks change it."""
    dit, inputs = _tiny_multiview_dit(), _dit_inputs("per-view")
    reordered = {**inputs, "view_indices": inputs["view_indices"].flip(1)}
    assert rel_err(dit(**reordered), dit(**inputs)) > 1e-3
    blocks = inputs["crossattn_emb"].unflatten(1, (VIEWS, -1))
    swapped = {**inputs, "crossattn_emb": blocks.roll(1, dims=1).flatten(1, 2)}
    assert rel_err(dit(**swapped), dit(**inputs)) > 1e-3


@pytest.mark.parametrize("views", DECODED_VIEWS)
def test_the_spread_decode_gives_every_rank_the_views_one_process_decodes(spawned, views):
    world_size, results = spawned
    expected = decode_views_spread(_tiny_vae(), _view_latents(views), None)
    assert expected.shape == (views, 3, 5, 8 * LATENT_HW[0], 8 * LATENT_HW[1])
    runs = [results[f"views/{views}/rank{rank}"] for rank in range(world_size)]
    assert [v for run in runs for v in range(run.start, run.stop)] == list(range(views))  # each view once, in order
    for rank in range(world_size):
        assert torch.equal(results[f"decode/{views}/rank{rank}"], expected), f"rank {rank}"
