"""The 7-camera driving model (`2B/auto/multiview`) on 1 or N GPUs: one guided step at 720p, peak memory, and the
whole sample projected to clips per GPU-hour.

Every rank loads the engine (`MultiviewEngine`; random weights of the released shapes by default, or a checkpoint
folder) and runs the parts of `--parts` (comma-separated), each a JSON line (times of the slowest rank; peak GPU
memory per rank, resident models included, and what was resident before the part):

- `text`: the sample's text encode (`encode_prompts`: the prompt, " " and the negative prompt; a new prompt each
  time, so the encoder runs for it while " " and the negative prompt come from the embedding cache, as in a batch
  job after its first sample);
- `step`: one guided denoising evaluation: the DiT on cond + uncond (batch 2) of the 7 views x 8 latent frames
  at 90 x 160 latents, 45 x 80 x 56 = 201,600 tokens per sample, under every layout of N ranks (`ParallelDiT`:
  cfg 2 x ulysses N/2 and ulysses N; the plain DiT on one);
- `decode`: the 7 views' decode (29 frames each at 720 x 1280, one view at a time), each rank decoding a run of
  whole views (the engine's own `decode_views`);
- `clip` (opt-in): a whole sample through the engine with `--steps` steps, the layout the engine picks, its
  total projected to 35 steps, to check the composed projection below.

With text, step and decode measured, one `projection` line per layout: text + the 35-step sampler's evaluations
x step + decode = s per sample, and clips per GPU-hour = 3600 / (s x N). `--compile` (compiled blocks) and the
offload flags are the engine's. A part that runs out of GPU memory on one GPU gives a line with "error".

GPU (720p, bf16; the step alone is about half a minute on one H100 by the FLOP count, so keep --iters low):
    python -m bench.multiview --out multiview.jsonl                       # 1 GPU, eager
    python -m bench.multiview --compile --out multiview.jsonl             # 1 GPU, compiled blocks
    python -m bench.multiview --gpus 2 --out multiview.jsonl              # 2 GPUs: both layouts
    python -m bench.multiview --gpus 4 --compile --out multiview.jsonl    # 4 GPUs
CPU check (tiny preset, 4 x 4 latents, gloo for the ranks):
    python -m bench.multiview --device cpu --smoke [--gpus 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.common import Recorder, tflops, time_ms
from bench.dit_step import forward_flops, make_inputs
from cosmos_ray.core.multiview_spec import CAMERAS, MULTIVIEW_MODEL, MultiviewSpec
from cosmos_ray.models.multiview_dit import CONTEXT_TOKENS_PER_VIEW
from cosmos_ray.multiview import MultiviewEngine
from cosmos_ray.parallel import ParallelConfig, ParallelContext, ParallelDiT
from jobs.options import add_engine_options, engine_options_of

PARTS = ("text", "step", "decode", "clip")
PROMPT = "The ego car drives through a busy intersection at dusk, its headlights on, pedestrians crossing."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_engine_options(parser, default_preset="random-2B")
    parser.set_defaults(model=MULTIVIEW_MODEL)
    parser.add_argument("--gpus", type=int, default=1, help="ranks of the group (spawned here, one GPU each)")
    parser.add_argument("--parts", default="text,step,decode", help=f"comma-separated parts of {', '.join(PARTS)}")
    parser.add_argument("--latent-hw", type=int, nargs=2, default=None, metavar=("H", "W"), help="default: 720p's")
    parser.add_argument("--steps", type=int, default=1, help="num_steps of the `clip` part's sample")
    parser.add_argument("--project-steps", type=int, default=35, help="num_steps the sample is projected to")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny preset and shapes, to check the script runs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing each part")
    parser.add_argument("--iters", type=int, default=2, help="timed calls of each part; the median is reported")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.checkpoint_dir, args.latent_hw = "tiny", None, (4, 4)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"--parts: unknown part(s) {', '.join(sorted(unknown))}; known: {', '.join(PARTS)}")
    if args.gpus < 1 or (args.device.startswith("cuda") and args.gpus > torch.cuda.device_count()):
        parser.error(f"--gpus {args.gpus}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    args.engine = engine_options_of(parser, args)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.gpus == 1:
        run_rank(0, args, None)
        return
    with socket.socket() as sock:  # a free port for the group's rendezvous
        sock.bind(("127.0.0.1", 0))
        init_method = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    mp.spawn(run_rank, args=(args, init_method), nprocs=args.gpus)


def run_rank(rank: int, args: argparse.Namespace, init_method: str | None) -> None:
    """Every part on this rank; rank 0 prints the lines."""
    device = torch.device(args.device)
    parallel = None
    if init_method is not None:
        if device.type == "cuda":
            device = torch.device("cuda", rank)
        else:
            torch.set_num_threads(max(1, torch.get_num_threads() // args.gpus))
        backend = "nccl" if device.type == "cuda" else "gloo"
        parallel = ParallelContext.init(rank, args.gpus, init_method, backend, device=device)
    engine = MultiviewEngine.from_options(args.engine, device=device, parallel=parallel)
    bench = Bench(engine, args, Recorder(device, args.out) if rank == 0 else None)
    parts = args.parts.split(",")
    with torch.no_grad():
        text_s = bench.text() if "text" in parts else None
        steps = bench.steps() if "step" in parts else {}
        decode_s = bench.decode() if "decode" in parts else None
        if "clip" in parts:
            bench.clip()
        if text_s is not None and decode_s is not None:
            for layout, step_s in steps.items():
                bench.projection(layout, text_s, step_s, decode_s)
    if parallel is not None:
        parallel.destroy()


class Bench:
    """The parts on one rank of the group (every rank makes the same calls; rank 0 holds the recorder)."""

    def __init__(self, engine: MultiviewEngine, args: argparse.Namespace, recorder: Recorder | None):
        self.engine = engine
        self.generator = engine.generator
        self.args = args
        self.recorder = recorder
        self.device = engine.device
        self.parallel = self.generator.parallel
        self.world_size = 1 if self.parallel is None else self.parallel.world_size
        cfg = self.generator.dit.cfg
        vae = self.generator.vae.cfg
        height, width = self.generator.info.trained_resolution
        self.latent_hw = tuple(args.latent_hw or (height // vae.spatial_compression, width // vae.spatial_compression))
        self.latent = (len(CAMERAS) * self.generator.info.state_t, *self.latent_hw)  # (V * state_t, h, w)
        self.tokens = self.latent[0] * self.latent[1] * self.latent[2] // (cfg.patch_temporal * cfg.patch_spatial**2)
        self.common = dict(
            model=self.generator.info.model.name,
            weights=self.generator.info.weights,
            world_size=self.world_size,
            latent=list(self.latent),
            tokens=self.tokens,
            dtype=str(self.generator.dtype).removeprefix("torch."),
            compile=args.engine.compile,
            offload=[name for name, on in dataclasses.asdict(args.engine.offload).items() if on],
        )

    # ------------------------------------------------------------------------------------------------ the parts

    def text(self) -> float | None:
        """Seconds of one sample's text encode (steady state: a new prompt, the other two texts cached)."""
        calls = iter(range(1_000_000))

        def encode() -> None:
            self.engine.encode_prompts(self.spec(f"{PROMPT} ({next(calls)})", guidance=7))

        result = self.measure(encode)
        if result is None:
            return None
        seconds, peaks, resident = result
        self.emit("multiview_text", text_encode_s=round(seconds, 3), **self.memory(peaks, resident))
        return seconds

    def steps(self) -> dict[str, float]:
        """Seconds of one guided evaluation under every layout of the group (the plain DiT on one GPU)."""
        dit = self.generator.dit
        inputs = make_inputs(
            dit.cfg, 2, self.latent, len(CAMERAS) * CONTEXT_TOKENS_PER_VIEW, self.device, self.generator.dtype
        )
        # each token attends to its view's 512 text tokens (the k/v projections of the other blocks are ~1e-4)
        flops = 2 * sum(forward_flops(dit.cfg, self.tokens, CONTEXT_TOKENS_PER_VIEW).values())
        layouts: list[tuple[str, Callable[[], Any], ParallelContext | None]] = []
        if self.parallel is None:
            layouts.append(("plain DiT", partial(dit, **inputs), None))
        else:
            rank, world = self.parallel.rank, self.world_size
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            for config in ParallelConfig.layouts(world):
                if config.problem(dit.cfg.num_heads, self.latent[0] // dit.cfg.patch_temporal, 2) is not None:
                    continue
                # the default group exists: this adds the layout's sub-groups only
                ctx = ParallelContext.init(rank, world, "env://", backend, config=config, device=self.device)
                layouts.append((str(config), partial(ParallelDiT(dit, ctx), **inputs), ctx))
        seconds = {}
        for layout, step, layout_ctx in layouts:
            result = self.measure(step)
            if layout_ctx is not None:
                layout_ctx.destroy()
            if result is None:
                continue
            step_s, peaks, resident = result
            seconds[layout] = step_s
            self.emit(
                "multiview_step",
                layout=layout,
                batch=2,
                ms=round(step_s * 1e3, 1),
                tflops=round(tflops(flops, step_s * 1e3), 1),
                **self.memory(peaks, resident),
            )
        return seconds

    def decode(self) -> float | None:
        """Seconds of the 7 views' decode (spread over the group by whole views)."""
        shape = (1, self.generator.vae.cfg.latent_channels, *self.latent)
        latents = torch.randn(shape, device=self.device, generator=torch.Generator(self.device).manual_seed(0))
        result = self.measure(lambda: self.engine.decode_views(latents))
        if result is None:
            return None
        seconds, peaks, resident = result
        self.emit("multiview_decode", views=len(CAMERAS), decode_s=round(seconds, 3), **self.memory(peaks, resident))
        return seconds

    def clip(self) -> None:
        """A whole sample through the engine (`--steps` steps, guidance 7), projected to `--project-steps`."""
        sampler = self.generator.sampler
        spec = self.spec(f"{PROMPT} (clip)", guidance=7, num_steps=self.args.steps)
        resident = self.reset_peak()
        result = self.engine(spec)
        peaks = self.peaks()
        if result is None:  # ranks other than 0
            return
        timings = result.metadata["timings_s"]
        evaluations = sampler.num_evaluations(spec.num_steps)
        per_evaluation = timings["sampling"] / evaluations
        projected = timings["total"] + per_evaluation * (sampler.num_evaluations(self.args.project_steps) - evaluations)
        self.emit(
            "multiview_clip",
            steps=spec.num_steps,
            evaluations=evaluations,
            **{f"{stage}_s": round(seconds, 3) for stage, seconds in timings.items()},
            s_per_evaluation=round(per_evaluation, 3),
            project_steps=self.args.project_steps,
            projected_total_s=round(projected, 1),
            projected_clips_per_gpu_hour=round(3600 / (projected * self.world_size), 3),
            **self.memory(peaks, resident),
        )

    def projection(self, layout: str, text_s: float, step_s: float, decode_s: float) -> None:
        """The whole sample on this group with `layout`, composed of the parts' times."""
        evaluations = self.generator.sampler.num_evaluations(self.args.project_steps)
        total = text_s + evaluations * step_s + decode_s
        self.emit(
            "multiview_projection",
            layout=layout,
            project_steps=self.args.project_steps,
            evaluations=evaluations,
            text_encode_s=round(text_s, 3),
            sampling_s=round(evaluations * step_s, 1),
            decode_s=round(decode_s, 3),
            total_s=round(total, 1),
            clips_per_gpu_hour=round(3600 / (total * self.world_size), 3),
        )

    # ---------------------------------------------------------------------------------------------- measuring

    def spec(self, prompt: str, **fields: Any) -> MultiviewSpec:
        return MultiviewSpec.from_dict({"inference_type": "text2world", "name": "bench", "prompt": prompt, **fields})

    def measure(self, fn: Callable[[], Any]) -> tuple[float, list[float], float] | None:
        """(median seconds of the slowest rank, each rank's peak GiB, the most GiB resident before) of `fn` after
        `--warmup` calls; None (and an "error" line) when one GPU runs out of memory (a group raises: the other
        ranks would wait)."""
        resident = self.reset_peak()
        try:
            ms = time_ms(fn, self.device, self.args.warmup, self.args.iters)
        except torch.OutOfMemoryError as error:
            if self.parallel is not None:
                raise
            self.emit("multiview_error", error=f"out of memory: {str(error).splitlines()[0]}", **self.memory([], 0))
            torch.cuda.empty_cache()
            return None
        return self.slowest(ms) / 1e3, self.peaks(), resident

    def reset_peak(self) -> float:
        """Starts a peak-memory window; returns the GiB allocated now (the largest over the group)."""
        if self.device.type != "cuda":
            return 0.0
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        return max(self.gather(torch.cuda.memory_allocated(self.device) / 2**30))

    def peaks(self) -> list[float]:
        """Each rank's peak GiB since `reset_peak` (empty on CPU)."""
        if self.device.type != "cuda":
            return []
        return self.gather(torch.cuda.max_memory_allocated(self.device) / 2**30)

    def slowest(self, ms: float) -> float:
        return max(self.gather(ms))

    def gather(self, value: float) -> list[float]:
        """`value` of every rank, in rank order."""
        if self.parallel is None:
            return [value]
        values = torch.zeros(self.world_size, dtype=torch.float64, device=self.device)
        dist.all_gather_into_tensor(values, torch.tensor([value], dtype=torch.float64, device=self.device))
        return values.tolist()

    def memory(self, peaks: list[float], resident: float) -> dict:
        if self.device.type != "cuda":
            return {}
        return {"peak_gib_per_rank": [round(p, 2) for p in peaks], "resident_gib": round(resident, 2)}

    def emit(self, name: str, **fields: Any) -> None:
        if self.recorder is not None:
            self.recorder.emit(name, **fields, **self.common)


if __name__ == "__main__":
    main()
