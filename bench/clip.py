"""Whole clips through `Generator`, on one GPU or a group (torchrun): stage times, clips per GPU-hour, memory.

Loads the models once (random weights of a preset, or a checkpoint folder), runs an untimed 1-step warm-up
clip (`--warmup-steps`), then for each offload setting (`--offload`, comma-separated) `--repeat` clips, each
timed by the generator's stages (text encode, conditioning, sampling, decode; the device is synchronized at
their boundaries). One JSON line per clip: the model, its evaluations, each stage in seconds, clips per
GPU-hour (3600 / (total s x GPUs)), the peak GPU memory of the busiest rank (weights included) and what was
resident before the clip, and `projected_total_s` at `--project-steps` (the clip's total plus its
per-evaluation sampling time for the missing evaluations), so a short run stands in for a 35-step one. A
setting that runs out of GPU memory gives a line with "error" instead of stopping the run.

GPU, 720p / 93 frames / guidance 7 (the minutes are estimates for H100s):
    # a whole 14B clip in a group of 4 (35 steps; ~5 min)
    torchrun --nproc-per-node 4 -m bench.clip --preset random-14B --model 14B/post-trained --out clip.jsonl
    # the distilled 2B beside the 35-step base, one GPU (~1 + ~1.5 min; the base projected from 4 steps)
    python -m bench.clip --preset random-2B --model 2B/distilled --repeat 2 --out clip.jsonl
    python -m bench.clip --preset random-2B --model 2B/post-trained --steps 4 --out clip.jsonl
    # peak memory and time per offload flag, one GPU (1 step; ~2.5 min for 2B, ~4 min for 14B)
    python -m bench.clip --preset random-14B --model 14B/post-trained --steps 1 \\
        --offload none,diffusion_model,tokenizer,text_encoder,all --out offload.jsonl
CPU check (tiny preset, 64x96, 5 frames, 2 steps; also under `torchrun --nproc-per-node 2`):
    python -m bench.clip --device cpu --smoke --offload none,all
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from bench.common import Recorder
from cosmos_ray.core.offload_config import NO_OFFLOAD, OffloadConfig
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.generator import Generator
from cosmos_ray.parallel import ParallelContext
from jobs.options import add_engine_options, engine_options_of

OFFLOAD_SETTINGS = {
    "none": NO_OFFLOAD,
    "diffusion_model": OffloadConfig(diffusion_model=True),
    "tokenizer": OffloadConfig(tokenizer=True),
    "text_encoder": OffloadConfig(text_encoder=True),
    "all": OffloadConfig.all(),
}
PROMPT = "A robot arm stacks red and blue blocks on a wooden table in a bright workshop."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_engine_options(parser, default_preset="random-2B", offload_flags=False)  # --offload compares settings
    parser.add_argument("--type", default="text2world", choices=["text2world", "image2world", "video2world"])
    parser.add_argument("--steps", type=int, default=35, help="num_steps of the spec")
    parser.add_argument("--project-steps", type=int, default=35, help="num_steps the total is projected to")
    parser.add_argument(
        "--frames", type=int, help="cosmos_ray_num_frames (1 + 4k); default: the model's native 93 frames"
    )
    parser.add_argument("--resolution", default="none", help='"H,W", or "none" for the trained resolution')
    parser.add_argument("--guidance", type=int, default=7)
    parser.add_argument("--offload", default="none", help=f"comma-separated settings of {', '.join(OFFLOAD_SETTINGS)}")
    parser.add_argument("--repeat", type=int, default=1, help="timed clips per offload setting")
    parser.add_argument("--warmup-steps", type=int, default=1, help="steps of the untimed warm-up clip (0: none)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny preset, 5 frames, 2 steps")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.checkpoint_dir, args.frames, args.steps = "tiny", None, 5, 2
    unknown = set(args.offload.split(",")) - set(OFFLOAD_SETTINGS)
    if unknown:
        parser.error(
            f"--offload: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(OFFLOAD_SETTINGS)}"
        )
    args.engine = engine_options_of(parser, args)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = torch.device(args.device)
    parallel = None
    if world_size > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        parallel = ParallelContext.init(
            rank, world_size, "env://", "nccl" if device.type == "cuda" else "gloo", device=device
        )
    resident = Generator.from_options(args.engine, device=device, parallel=parallel)
    recorder = Recorder(device, args.out)
    with torch.no_grad():
        try:
            if args.warmup_steps:  # kernels, allocator, the negative prompt's embedding
                resident(clip_spec(args, "warm-up", num_steps=args.warmup_steps))
        except torch.OutOfMemoryError:
            if parallel is not None:
                raise
            print("warm-up: out of GPU memory with every model resident; timing the settings anyway", file=sys.stderr)
        for setting in args.offload.split(","):
            for module in (resident.dit, resident.vae, resident.text_encoder):  # all back on the GPU
                module.to(resident.device)
            generator = Generator(
                resident.dit,
                resident.vae,
                resident.text_encoder,
                resident.info,
                resident.sampler,
                device=resident.device,
                dtype=resident.dtype,
                parallel=parallel,
                offload=OFFLOAD_SETTINGS[setting],
            )
            for repeat in range(args.repeat):
                # a new prompt per clip, so the text encoder runs (and moves, when offloaded) in every clip
                record = run_clip(generator, clip_spec(args, f"{setting} {repeat}"), args.project_steps)
                if rank == 0:
                    recorder.emit("clip", offload=setting, repeat=repeat, **record, compile=args.compile)
    if parallel is not None:
        parallel.destroy()


def clip_spec(args: argparse.Namespace, tag: str, num_steps: int | None = None) -> GenerationSpec:
    inputs = Path(__file__).resolve().parent.parent / "examples" / "media"
    return GenerationSpec(
        inference_type=args.type,
        name="bench-clip",
        prompt=f"{PROMPT} ({tag})",
        input_path={"image2world": str(inputs / "square.png"), "video2world": str(inputs / "square.mp4")}.get(
            args.type
        ),
        guidance=args.guidance,
        cosmos_ray_num_frames=args.frames,
        num_steps=num_steps or args.steps,
        resolution=args.resolution,
    )


def run_clip(generator: Generator, spec: GenerationSpec, project_steps: int) -> dict:
    """One clip's measurements; every rank of a group must call this (rank 0's return value is the line).

    Out of memory on one GPU is reported, not raised; in a group it is raised (the other ranks would wait).
    """
    device = generator.device
    world_size = 1 if generator.parallel is None else generator.parallel.world_size
    evaluations = generator.sampler.num_evaluations(spec.num_steps)
    record = dict(
        model=generator.info.model.name,
        weights=generator.info.weights,
        world_size=world_size,
        inference_type=spec.inference_type,
        frames=generator.num_frames(spec),
        resolution=list(generator.resolution(spec)),
        steps=spec.num_steps,
        evaluations=evaluations,
        guidance=spec.guidance if generator.sampler.uses_guidance else 0,
        dtype=str(generator.dtype).removeprefix("torch."),
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        record["resident_gib"] = max_over_group(torch.cuda.memory_allocated(device) / 2**30, generator)
    try:
        result = generator(spec)
    except torch.OutOfMemoryError as error:
        if world_size > 1:
            raise
        return {**record, "error": f"out of memory: {str(error).splitlines()[0]}"} | peak(device, generator)
    record |= peak(device, generator)
    if result is None:  # ranks other than 0
        return record
    timings = result.metadata["timings_s"]
    per_evaluation = timings["sampling"] / evaluations
    projected = timings["total"] + per_evaluation * (generator.sampler.num_evaluations(project_steps) - evaluations)
    return {
        **record,
        **{f"{stage}_s": round(seconds, 3) for stage, seconds in timings.items()},
        "s_per_evaluation": round(per_evaluation, 3),
        "clips_per_gpu_hour": round(3600 / (timings["total"] * world_size), 2),
        "project_steps": project_steps,
        "projected_total_s": round(projected, 2),
        "projected_clips_per_gpu_hour": round(3600 / (projected * world_size), 2),
    }


def peak(device: torch.device, generator: Generator) -> dict:
    if device.type != "cuda":
        return {}
    return {"peak_gib": round(max_over_group(torch.cuda.max_memory_allocated(device) / 2**30, generator), 2)}


def max_over_group(value: float, generator: Generator) -> float:
    """The largest value over the generator's group (the value itself without a group)."""
    if generator.parallel is None:
        return round(value, 2)
    tensor = torch.tensor([value], dtype=torch.float64, device=generator.device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return round(tensor.item(), 2)


if __name__ == "__main__":
    main()
