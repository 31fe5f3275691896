"""One guided denoising step (the DiT on cond + uncond, batch 2) on N ranks vs 1, for every parallel layout.

Rank 0 first times the plain DiT alone (the N=1 baseline) and diffusers' CosmosTransformer3DModel with
the same weights (which has no context parallelism) while the other ranks wait; then every rank runs
`ParallelDiT` under each layout of N ranks (guidance parallel, Ulysses, both). Each layout's line has
its time (slowest rank), the speedup over our N=1 and over diffusers' N=1, the parallel efficiency
(speedup / N), the group's TFLOP/s and the relative error of its velocity against the N=1 velocity.

GPU (2B; 720p, 93 frames -> 24 x 88 x 160 latents = 84,480 tokens; bf16):
    torchrun --nproc-per-node 2 -m bench.parallel --out parallel.jsonl
CPU check (tiny config, gloo):
    torchrun --nproc-per-node 2 -m bench.parallel --device cpu --smoke
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist

from bench.common import Recorder, add_common_args, tflops, time_ms
from bench.dit_step import diffusers_twin, forward_flops, make_inputs
from cosmos_ray.dtypes import default_dtype_name
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
from cosmos_ray.parallel import ParallelConfig, ParallelContext, ParallelDiT


def slowest_ms(ms: float, device: torch.device) -> float:
    """The largest of every rank's time: a parallel step ends when its last rank does."""
    value = torch.tensor([ms], dtype=torch.float64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value.item()


def rel_err(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.float() - expected.float()).norm() / expected.float().norm()).item()


def run_diffusers(twin: torch.nn.Module, inputs: dict) -> torch.Tensor:
    """diffusers' forward on our DiT's arguments (its timesteps are in the net's scaled units)."""
    height, width = inputs["x"].shape[-2:]
    return twin(
        inputs["x"],
        inputs["timesteps"] * DiTConfig.timestep_scale,
        inputs["crossattn_emb"],
        condition_mask=inputs["condition_mask"],
        padding_mask=inputs["x"].new_zeros(1, 1, height, width),
        return_dict=False,
    )[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, warmup=1, iters=3)
    parser.add_argument("--latent", type=int, nargs=3, default=[24, 88, 160], metavar=("T", "H", "W"))
    parser.add_argument("--text-len", type=int, default=512)
    parser.add_argument("--backend", default="auto", help="attention backend (auto: cuDNN first on CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks (baseline too)")
    parser.add_argument("--no-diffusers", action="store_true", help="skip the diffusers N=1 line")
    args = parser.parse_args(argv)

    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if torch.device(args.device).type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        backend = "nccl"
    else:
        device, backend = torch.device(args.device), "gloo"
    if "MASTER_ADDR" not in os.environ:  # a plain `python -m bench.parallel`: a group of one
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29531")
    # This context owns the default group; the per-layout contexts below only add sub-groups to it.
    group = ParallelContext.init(rank, world_size, "env://", backend, device=device)

    cfg = DiTConfig.preset("tiny" if args.smoke else "2B")
    latent = (4, 8, 12) if args.smoke else tuple(args.latent)
    text_len = 16 if args.smoke else args.text_len
    dtype = getattr(torch, default_dtype_name(device.type))
    tokens = latent[0] * latent[1] * latent[2] // (cfg.patch_temporal * cfg.patch_spatial**2)
    step_flops = 2 * sum(forward_flops(cfg, tokens, text_len).values())  # cond + uncond
    recorder = Recorder(device, args.out)
    common = dict(
        config="tiny" if args.smoke else "2B",
        latent=list(latent),
        tokens=tokens,
        text_len=text_len,
        dtype=str(dtype).removeprefix("torch."),
        backend=args.backend,
        compile=args.compile,
    )

    torch.manual_seed(0)  # the same weights and inputs on every rank
    with torch.device(device):
        dit = MiniTrainDiT(cfg, attention_backend=args.backend)
    twin = None if args.no_diffusers or rank != 0 else diffusers_twin(dit).to(dtype)
    dit.cast(dtype).eval().requires_grad_(False)
    if args.compile:
        dit.compile_blocks(dynamic=False)
    inputs = make_inputs(cfg, 2, latent, text_len, device, dtype)

    with torch.no_grad():
        baseline_ms, diffusers_ms, expected = 0.0, None, None
        if rank == 0:
            baseline_ms = time_ms(lambda: dit(**inputs), device, args.warmup, args.iters)
            expected = dit(**inputs)
            recorder.emit(
                "parallel_step",
                impl="ours",
                layout="plain DiT",
                world_size=1,
                ms=round(baseline_ms, 2),
                tflops=round(tflops(step_flops, baseline_ms), 1),
                **common,
            )
            if twin is not None:
                diffusers_ms = time_ms(lambda: run_diffusers(twin, inputs), device, args.warmup, args.iters)
                recorder.emit(
                    "parallel_step",
                    impl="diffusers",
                    layout="plain DiT",
                    world_size=1,
                    ms=round(diffusers_ms, 2),
                    tflops=round(tflops(step_flops, diffusers_ms), 1),
                    **common,
                )
                del twin
        dist.barrier()

        for config in ParallelConfig.layouts(world_size):
            with ParallelContext.init(rank, world_size, "env://", backend, config=config, device=device) as ctx:
                velocity = ParallelDiT(dit, ctx)
                ms = slowest_ms(time_ms(lambda: velocity(**inputs), device, args.warmup, args.iters), device)
                out = velocity(**inputs)
                if rank == 0:
                    speedup = baseline_ms / ms
                    vs_diffusers = {} if diffusers_ms is None else {"speedup_vs_diffusers": round(diffusers_ms / ms, 3)}
                    recorder.emit(
                        "parallel_step",
                        impl="ours",
                        layout=str(config),
                        world_size=world_size,
                        ms=round(ms, 2),
                        speedup=round(speedup, 3),
                        efficiency=round(speedup / world_size, 3),
                        **vs_diffusers,
                        tflops=round(tflops(step_flops, ms), 1),
                        rel_err_vs_single=rel_err(out, expected) if expected is not None else None,
                        **common,
                    )
    group.destroy()


if __name__ == "__main__":
    main()
