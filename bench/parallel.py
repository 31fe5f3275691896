"""One guided denoising step (the DiT on cond + uncond, batch 2) on N ranks vs 1, for every parallel layout.

Rank 0 first times the plain DiT alone (the N=1 baseline; or reads it from an earlier run's JSON lines with
`--baseline-from`), optionally the floor (`--floor`: every GEMM and attention of a block timed alone, x the
blocks) and diffusers' CosmosTransformer3DModel with the same weights (which has no context parallelism)
while the other ranks wait; then every rank runs `ParallelDiT` under each layout of N ranks (guidance
parallel, Ulysses, both). Each layout's line has its time (slowest rank), the speedup over our N=1 and over
diffusers' N=1, the parallel efficiency (speedup / N), the time over the floor split N ways, the group's
TFLOP/s, the peak GPU memory of the busiest rank (weights included) and the relative error of its velocity
against the N=1 velocity. `--model` picks the net (an official model name; the distilled model runs its
unguided batch of 1).

GPU (720p, 93 frames -> 24 x 88 x 160 latents = 84,480 tokens; bf16):
    torchrun --nproc-per-node 2 -m bench.parallel --out parallel.jsonl                        # 2B
    torchrun --nproc-per-node 1 -m bench.parallel --model 14B/post-trained --no-diffusers --floor --out p14.jsonl
    torchrun --nproc-per-node 4 -m bench.parallel --model 14B/post-trained --no-diffusers --baseline-from p14.jsonl \\
        --out p14.jsonl
CPU check (tiny shapes with the model's recipe, gloo):
    torchrun --nproc-per-node 2 -m bench.parallel --device cpu --smoke --model 14B/post-trained
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist

from bench.common import Recorder, add_common_args, tflops, time_ms
from bench.dit_step import forward_flops, make_inputs, measure_floor
from cosmos_ray.core.dtypes import default_dtype_name
from cosmos_ray.core.options import ATTENTION_BACKENDS
from cosmos_ray.core.registry import DEFAULT_MODEL, MODEL_NAMES, get_model
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
from cosmos_ray.parallel import ParallelConfig, ParallelContext, ParallelDiT
from tests.oracles import diffusers_dit


def slowest_ms(ms: float, device: torch.device) -> float:
    """The largest of every rank's time: a parallel step ends when its last rank does."""
    return max_over_ranks(ms, device)


def max_over_ranks(value: float, device: torch.device) -> float:
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.item()


def rel_err(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.float() - expected.float()).norm() / expected.float().norm()).item()


def run_diffusers(twin: torch.nn.Module, inputs: dict, timestep_scale: float) -> torch.Tensor:
    """diffusers' forward on our DiT's arguments (its timesteps are in the net's scaled units)."""
    height, width = inputs["x"].shape[-2:]
    return twin(
        inputs["x"],
        inputs["timesteps"] * timestep_scale,
        inputs["crossattn_emb"],
        condition_mask=inputs["condition_mask"],
        padding_mask=inputs["x"].new_zeros(1, 1, height, width),
        return_dict=False,
    )[0]


def timed(
    fn: Callable[[], torch.Tensor], device: torch.device, warmup: int, iters: int
) -> tuple[float, float, torch.Tensor]:
    """(median ms, peak GiB allocated on `device` during the calls, weights included; 0 on CPU, the output of
    the first call). The first call is one of the `warmup` calls (at least one)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    ms = time_ms(fn, device, max(warmup - 1, 0), iters)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return ms, peak, out


def earlier_baseline(path: Path, match: dict) -> tuple[float, float | None]:
    """(N=1 ms, floor ms or None) of the last matching lines of an earlier run's JSON lines."""
    baseline = floor = None
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if any(record.get(key) != value for key, value in match.items()):
            continue
        if record["name"] == "parallel_step" and record["world_size"] == 1 and record["impl"] == "ours":
            baseline = record["ms"]
        elif record["name"] == "dit_floor":
            floor = record["ms"]
    if baseline is None:
        raise SystemExit(f"{path} has no N=1 'parallel_step' line for {match}")
    return baseline, floor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, warmup=1, iters=3)
    parser.add_argument("--model", choices=MODEL_NAMES, default=DEFAULT_MODEL, help="official model whose net runs")
    parser.add_argument("--latent", type=int, nargs=3, default=[24, 88, 160], metavar=("T", "H", "W"))
    parser.add_argument("--text-len", type=int, default=512)
    parser.add_argument(
        "--attention-backend",
        choices=ATTENTION_BACKENDS,
        default="auto",
        help="attention kernel (auto: cuDNN first on CUDA)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks (baseline too)")
    parser.add_argument("--no-diffusers", action="store_true", help="skip the diffusers N=1 line")
    parser.add_argument("--floor", action="store_true", help="rank 0 also times the floor (GEMMs, attention alone)")
    parser.add_argument(
        "--baseline-from",
        type=Path,
        metavar="JSONL",
        help="take the N=1 time (and floor) from an earlier run's lines instead of timing them (no error check)",
    )
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

    model = get_model(args.model)
    cfg = DiTConfig.of_model(model, "tiny" if args.smoke else None)
    batch = 1 if model.few_step else 2  # cond + uncond, or the unguided pass
    latent = (4, 8, 12) if args.smoke else tuple(args.latent)
    text_len = 16 if args.smoke else args.text_len
    dtype = getattr(torch, default_dtype_name(device.type))
    tokens = latent[0] * latent[1] * latent[2] // (cfg.patch_temporal * cfg.patch_spatial**2)
    step_flops = batch * sum(forward_flops(cfg, tokens, text_len).values())
    recorder = Recorder(device, args.out)
    common = dict(
        model=args.model,
        config="tiny" if args.smoke else model.size,
        latent=list(latent),
        tokens=tokens,
        batch=batch,
        text_len=text_len,
        dtype=str(dtype).removeprefix("torch."),
        backend=args.attention_backend,
        compile=args.compile,
    )

    torch.manual_seed(0)  # the same weights and inputs on every rank
    with torch.device(device):
        dit = MiniTrainDiT(cfg, attention_backend=args.attention_backend)
    twin = None if args.no_diffusers or rank != 0 else diffusers_dit(dit).to(dtype)
    dit.cast(dtype).eval().requires_grad_(False)
    if args.compile:
        dit.compile_blocks(dynamic=False)
    inputs = make_inputs(cfg, batch, latent, text_len, device, dtype)
    weights_gib = round(sum(p.numel() * p.element_size() for p in dit.parameters()) / 2**30, 2)

    with torch.no_grad():
        baseline_ms, floor_ms, diffusers_ms, expected = 0.0, None, None, None
        if args.baseline_from is not None:
            baseline_ms, floor_ms = earlier_baseline(
                args.baseline_from, {key: common[key] for key in ("model", "latent", "batch", "dtype", "compile")}
            )
        elif rank == 0:
            if args.floor:
                floor_ms = measure_floor(
                    cfg,
                    tokens,
                    text_len,
                    batch,
                    dtype,
                    args.attention_backend,
                    device,
                    recorder,
                    args.warmup,
                    args.iters,
                )
                recorder.emit(
                    "dit_floor", ms=round(floor_ms, 2), tflops=round(tflops(step_flops, floor_ms), 1), **common
                )
            baseline_ms, peak_gib, expected = timed(lambda: dit(**inputs), device, args.warmup, args.iters)
            recorder.emit(
                "parallel_step",
                impl="ours",
                layout="plain DiT",
                world_size=1,
                ms=round(baseline_ms, 2),
                **({} if floor_ms is None else {"x_floor": round(baseline_ms / floor_ms, 3)}),
                tflops=round(tflops(step_flops, baseline_ms), 1),
                peak_gib=round(peak_gib, 2),
                weights_gib=weights_gib,
                **common,
            )
            if twin is not None:
                diffusers_ms = time_ms(
                    lambda: run_diffusers(twin, inputs, cfg.timestep_scale), device, args.warmup, args.iters
                )
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
        if world_size == 1:
            group.destroy()
            return

        for config in ParallelConfig.layouts(world_size):
            if config.problem(cfg.num_heads, latent[0] // cfg.patch_temporal, batch) is not None:
                continue  # e.g. guidance parallel for the unguided distilled batch
            with ParallelContext.init(rank, world_size, "env://", backend, config=config, device=device) as ctx:
                velocity = ParallelDiT(dit, ctx)
                ms, peak_gib, out = timed(lambda: velocity(**inputs), device, args.warmup, args.iters)
                ms, peak_gib = slowest_ms(ms, device), max_over_ranks(peak_gib, device)
                if rank == 0:
                    speedup = baseline_ms / ms
                    extra = {} if diffusers_ms is None else {"speedup_vs_diffusers": round(diffusers_ms / ms, 3)}
                    if floor_ms is not None:
                        extra |= {
                            "floor_ms": round(floor_ms / world_size, 2),
                            "x_floor": round(ms * world_size / floor_ms, 3),
                        }
                    if expected is not None:
                        extra["rel_err_vs_single"] = rel_err(out, expected)
                    recorder.emit(
                        "parallel_step",
                        impl="ours",
                        layout=str(config),
                        world_size=world_size,
                        ms=round(ms, 2),
                        speedup=round(speedup, 3),
                        efficiency=round(speedup / world_size, 3),
                        tflops=round(tflops(step_flops, ms), 1),
                        peak_gib=round(peak_gib, 2),
                        weights_gib=weights_gib,
                        **extra,
                        **common,
                    )
    group.destroy()


if __name__ == "__main__":
    main()
