"""Episodes per GPU-hour of the action-conditioned robot model (`2B/robot/action-cond`) in its engine.

    python -m bench.robot_action --preset random-2B [--chunks 3] [--steps 35] [--out results.jsonl]
    python -m bench.robot_action --smoke --device cpu          # tiny preset, 2 steps: checks the script runs

A synthetic Bridge-layout episode (`tests/robot_helpers.py`: annotation JSON and mp4 at 256x320, 12 x chunks + 1
states) is rolled out whole by `ActionEngine` (one process, one GPU), with guidance 7 (the official default: two
DiT passes per step) and 0 (the official example's: one pass). Each record: the episode's median wall time, its
chunks and steps, episodes per GPU-hour (3600 s / that time), the time per chunk and per DiT evaluation, the peak
GPU memory of a rollout beyond the loaded models, the loaded models' memory, and the stage timings of the last
rollout. The engine rolls out one episode at a time (a batch of episodes would need per-sample actions and seeds
in the sampler's batch: not built), so how many fit one GPU is a question of processes per GPU: the loaded models'
memory plus the rollout's peak, against the GPU's memory.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from bench.common import Recorder, add_common_args, time_ms_and_peak_gib
from cosmos_ray.core.action_spec import ACTION_MODEL, ActionSpec
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.presets import RANDOM_PRESETS
from cosmos_ray.robot_action import ActionEngine
from tests.robot_helpers import write_episode

BRIDGE_SIZE = (256, 320)  # (H, W) of the released model's training video
SMOKE_SIZE = (32, 48)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, warmup=1, iters=3)
    parser.add_argument("--preset", choices=sorted(RANDOM_PRESETS), default="random-2B", help="random weights")
    parser.add_argument("--chunks", type=int, default=3, help="chunks of 12 actions per episode")
    parser.add_argument("--steps", type=int, default=35, help="denoising steps per chunk (official: 35)")
    parser.add_argument("--guidance", type=int, nargs="+", default=[7, 0], help="guidance values to measure")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    preset, size, steps = ("tiny", SMOKE_SIZE, 2) if args.smoke else (args.preset, BRIDGE_SIZE, args.steps)
    recorder = Recorder(device, args.out)

    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    engine = ActionEngine.from_options(EngineOptions(source=preset, model=ACTION_MODEL), device=device)
    models_gib = (torch.cuda.memory_allocated(device) - before) / 2**30 if device.type == "cuda" else None
    with tempfile.TemporaryDirectory() as folder:
        fields = write_episode(Path(folder), num_frames=12 * args.chunks + 1, size=size)
        for guidance in args.guidance:
            spec = ActionSpec.from_dict({**fields, "num_steps": steps, "guidance": guidance})
            results = []
            ms, peak = time_ms_and_peak_gib(lambda: results.append(engine(spec)), device, args.warmup, args.iters)
            metadata = results[-1].metadata
            chunks = len(metadata["chunks"])
            evaluations = chunks * metadata["evaluations"]
            recorder.emit(
                "robot_action_episode",
                model=ACTION_MODEL,
                preset=preset,
                resolution=list(size),
                chunks=chunks,
                steps=steps,
                guidance=guidance,
                passes_per_step=2 if guidance else 1,
                batch=1,
                episode_s=round(ms / 1e3, 3),
                episodes_per_gpu_hour=round(3600e3 / ms, 1),
                chunk_s=round(ms / 1e3 / chunks, 3),
                # the sampler's share of the last rollout per DiT evaluation (one or two passes)
                evaluation_ms=round(metadata["timings_s"]["sampling"] * 1e3 / evaluations, 2),
                rollout_peak_gib=None if peak is None else round(peak, 2),
                models_gib=None if models_gib is None else round(models_gib, 2),
                frames=metadata["num_frames"],
                timings_s=metadata["timings_s"],
            )


if __name__ == "__main__":
    main()
