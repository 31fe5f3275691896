"""The batch pipeline end to end: videos per hour and the share of GPU time spent denoising, per layout.

Runs `pipelines.batch.run` over one synthetic text2world manifest once per layout (GPUs per group x
groups), each run into a fresh output folder, and prints one JSON line per run: wall time, videos per hour,
the share of GPU time (wall x GPUs, model loading included) spent denoising and spent inside group calls,
and the mean of each stage per sample (text encode, sampling, decode, group call, mp4 encode).

GPU node with Ray installed (8 GPUs: replicas of 1, 2 and 8 GPUs; random 2B weights, or --checkpoint-dir):
    python -m bench.batch --preset random-2B --layouts 1x8,2x4,8x1 --samples 32 --out batch.jsonl
CPU check (tiny preset, logical GPUs):
    python -m bench.batch --device cpu --smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from bench.common import Recorder
from cosmos_ray.core.manifest import MANIFEST_SCHEMA
from cosmos_ray.core.outputs import OK, OutputStore
from jobs.options import add_engine_options, engine_options_of
from pipelines.batch import BatchConfig, run
from pipelines.group import GroupConfig

STAGES = ("text_encode", "sampling", "decode", "group_call", "mp4_encode")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__.split("\n\n")[0])
    add_engine_options(parser, default_preset="tiny")
    parser.add_argument("--layouts", default="1x1", help="comma-separated GPUSxGROUPS, e.g. 1x8,2x4,8x1")
    parser.add_argument("--samples", type=int, default=16, help="videos per run")
    parser.add_argument("--prompts", type=int, default=4, help="distinct prompts among the samples")
    parser.add_argument(
        "--frames", type=int, default=None, help="cosmos_ray_num_frames (1 + 4k); default: the model's native 93"
    )
    parser.add_argument("--steps", type=int, default=35, help="num_steps")
    parser.add_argument("--guidance", type=int, default=7)
    parser.add_argument("--resolution", default="none", help='"H,W", or "none" for the trained resolution')
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu starts a local Ray with logical GPUs",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny preset, 4 short samples, layouts 1x2,2x1")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.checkpoint_dir, args.layouts = "tiny", None, "1x2,2x1"
        args.samples, args.prompts, args.frames, args.steps = 4, 2, 9, 2
    args.engine = engine_options_of(parser, args)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    layouts = [tuple(int(n) for n in layout.split("x")) for layout in args.layouts.split(",")]
    if not ray.is_initialized():
        logical_gpus = max(gpus * groups for gpus, groups in layouts) if args.device == "cpu" else None
        ray.init(num_gpus=logical_gpus, num_cpus=8 if logical_gpus else None)
    recorder = Recorder(torch.device(args.device), args.out)
    with tempfile.TemporaryDirectory() as workdir:
        manifest = Path(workdir) / "manifest.parquet"
        write_manifest(manifest, args)
        for gpus_per_group, groups in layouts:
            output = Path(workdir) / f"out-{gpus_per_group}x{groups}"
            config = BatchConfig(
                manifest=str(manifest),
                output=str(output),
                groups=groups,
                group=GroupConfig(gpus_per_group=gpus_per_group, engine=args.engine),
            )
            summary = run(config)
            records = [r for r in OutputStore(str(output)).read_run_table(summary.run_id) if r.status == OK]
            group_gpu_s = sum(stage_s(r, "group_call") for r in records) * gpus_per_group
            means = (
                {f"mean_{stage}_s": round(statistics.fmean(stage_s(r, stage) for r in records), 3) for stage in STAGES}
                if records
                else {}
            )
            recorder.emit(
                "batch_run",
                model=args.model,
                layout=f"{gpus_per_group}x{groups}",
                gpus=summary.gpus,
                samples=args.samples,
                compile=args.compile,
                ok=summary.ok,
                failed=summary.failed,
                frames=args.frames,
                steps=args.steps,
                resolution=args.resolution,
                guidance=args.guidance,
                wall_s=round(summary.wall_s, 2),
                videos_per_hour=round(summary.videos_per_hour, 2),
                denoising_share=round(summary.denoising_share, 4),
                group_call_share=round(group_gpu_s / (summary.wall_s * summary.gpus), 4),
                **means,
            )


def write_manifest(path: Path, args: argparse.Namespace) -> None:
    rows = []
    for index in range(args.samples):
        spec = {
            "inference_type": "text2world",
            "name": f"bench-{index}",
            "seed": index,
            "prompt": f"Prompt {index % args.prompts}: a robot arm stacks coloured blocks on a table.",
            "cosmos_ray_num_frames": args.frames,
            "num_steps": args.steps,
            "guidance": args.guidance,
            "resolution": args.resolution,
        }
        rows.append(
            {
                "spec_json": json.dumps(spec),
                "name": spec["name"],
                "inference_type": "text2world",
                "source": f"bench:{index}",
            }
        )
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), path)


def stage_s(record, stage: str) -> float:
    return record.metadata["timings_s"].get(stage, 0.0)


if __name__ == "__main__":
    main()
