"""Autoregressive long videos: peak device memory and time per window, for 1, 2, 3, ... windows.

Generates one text2world video per window count with the official sliding-window mode (`chunk_size` 77,
`chunk_overlap` 1 by default: K windows make 77 + 76 (K - 1) frames) and prints one JSON line per count:
the peak device memory allocated during the run beyond what the loaded models hold (it should not grow
with K: finished frames leave the device), seconds per window, per stage, per model evaluation, and a
projection of one window at the official 35 steps. A 1-step run first warms up and caches the prompts.

GPU (random 2B weights with the Reason1-shaped text encoder, 720p, bf16, guidance 7; ~4 minutes):
    python -m bench.autoregressive --device cuda --chunks 1 2 3 --steps 2 --out autoregressive.jsonl
CPU check (tiny preset at 16x16, windows of 9 frames, 1 step):
    python -m bench.autoregressive --device cpu --smoke
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench.common import Recorder
from cosmos_ray.core.registry import DEFAULT_MODEL, get_model
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.generator import Generator
from jobs.options import add_engine_options, engine_options_of

OFFICIAL_STEPS = 35


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.autoregressive", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_engine_options(parser, default_preset="random-2B")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 3], help="window counts to run")
    parser.add_argument("--chunk-size", type=int, default=77)
    parser.add_argument("--chunk-overlap", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2, help="num_steps per window (the official default is 35)")
    parser.add_argument("--guidance", type=int, default=7)
    parser.add_argument(
        "--resolution", default=",".join(map(str, get_model(DEFAULT_MODEL).trained_resolution)), help='"H,W"'
    )
    parser.add_argument("--smoke", action="store_true", help="tiny preset, 16x16, windows of 9 frames, 1 step")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.resolution, args.chunk_size, args.steps = "tiny", "16,16", 9, 1
        args.chunks = [1, 2]
    args.engine = engine_options_of(parser, args)
    return args


def long_spec(args: argparse.Namespace, num_chunks: int, num_steps: int) -> GenerationSpec:
    frames = args.chunk_size + (num_chunks - 1) * (args.chunk_size - args.chunk_overlap)
    return GenerationSpec(
        inference_type="text2world",
        name=f"bench-autoregressive-{num_chunks}",
        prompt="A robot arm stacks cubes on a table.",
        resolution=args.resolution,
        guidance=args.guidance,
        num_steps=num_steps,
        enable_autoregressive=True,
        num_output_frames=frames,
        chunk_size=args.chunk_size,
        chunk_overlap=args.chunk_overlap,
    )


def _metadata(generator: Generator, spec: GenerationSpec) -> dict:
    result = generator(spec)
    assert result is not None  # one process is its own rank 0
    return result.metadata


def run(generator: Generator, spec: GenerationSpec) -> tuple[dict, float | None]:
    """(the result's metadata, peak GiB allocated on the device during the run beyond the resident models)."""
    device = generator.device
    if device.type != "cuda":
        return _metadata(generator, spec), None
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    resident = torch.cuda.memory_allocated(device)
    metadata = _metadata(generator, spec)
    return metadata, (torch.cuda.max_memory_allocated(device) - resident) / 2**30


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    start = time.perf_counter()
    generator = Generator.from_options(args.engine, device=device)
    load_s = time.perf_counter() - start
    recorder = Recorder(device, args.out)
    evaluations = generator.sampler.num_evaluations(args.steps)
    official_evaluations = generator.sampler.num_evaluations(OFFICIAL_STEPS)

    generator(long_spec(args, num_chunks=1, num_steps=1))  # warm-up; caches the prompt embeddings
    for num_chunks in args.chunks:
        spec = long_spec(args, num_chunks, args.steps)
        metadata, peak_gib = run(generator, spec)
        timings = metadata["timings_s"]
        seconds = [chunk["seconds"] for chunk in metadata["chunks"]]
        per_evaluation = timings["sampling"] / (num_chunks * evaluations)
        projected = seconds[-1] + per_evaluation * (official_evaluations - evaluations)  # one window, 35 steps
        recorder.emit(
            "autoregressive",
            preset=args.engine.source,
            model=args.engine.model,
            inference_type=spec.inference_type,
            chunks=num_chunks,
            frames=spec.num_output_frames,
            chunk_size=spec.chunk_size,
            chunk_overlap=spec.chunk_overlap,
            window_frames=generator.window_frames,
            resolution=metadata["resolution"],
            steps=spec.num_steps,
            evaluations_per_chunk=evaluations,
            guidance=spec.guidance,
            dtype=metadata["dtype"],
            load_s=round(load_s, 1),
            peak_gib=None if peak_gib is None else round(peak_gib, 3),
            resident_gib=round(torch.cuda.memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None,
            s_total=timings["total"],
            s_per_chunk=seconds,
            s_stages={stage: timings[stage] for stage in ("text_encode", "conditioning", "sampling", "decode")},
            s_per_evaluation=round(per_evaluation, 3),
            projected_s_per_chunk_35_steps=round(projected, 1),
        )


if __name__ == "__main__":
    main()
