"""8-bit attention against bf16, side by side in one run on one GPU: speed and error.

Parts (`--parts`, all by default):
  kernel  the attention alone, 84,480 tokens x 128 with 16 heads (2B) and 40 (14B): ms, TFLOP/s-equivalent (the
          bf16 FLOP count 4 S^2 H D over the time), relative error against an fp32 reference and against bf16
          (our int8 kernel also with its other formats: FP16 PV, FP8 QK); on random normal inputs and on
          DiT-like ones (K with a mean offset and outlier channels, which smoothing K must absorb)
  step    one guided 2B step at 720p (batch 2 = cond + uncond), eager, and with compiled blocks for bf16 and the
          first of `--kernels`: ms, and the velocity's relative error against bf16
  clip    whole generations through the Generator, 2B/distilled and 2B/post-trained (`--clip-steps` each):
          the velocity error of every evaluation at the bf16 run's own inputs, the clip's time, the final
          latents' relative error and the decoded frames' PSNR against the bf16 clip, for each schedule
          (`--schedules`: the evaluations kept bf16 at the start and at the end)
An 8-bit kernel that cannot run here gives a line with its reason. With checkpoints, the clip part measures the
error on real weights: `--checkpoint-dir DIR` (the kernel and step parts always use random inputs / weights).

GPU (one H100; the kernel part ~2.5 min, the eager step part ~45 s per kernel, compiling adds ~1.5 min):
    python -m bench.precision --kernels int8 fp8 sage2 --out precision.jsonl
CPU check (tiny shapes; no 8-bit kernel runs on a CPU, so it checks the bench's own code):
    python -m bench.precision --device cpu --smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from bench.common import Recorder, add_common_args, tflops, time_ms
from bench.dit_step import forward_flops, make_inputs
from cosmos_ray.core.attention_precision import ATTENTION_PRECISIONS, BF16_ATTENTION, AttentionPrecision
from cosmos_ray.core.registry import get_model
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.generator import Generator
from cosmos_ray.models.attention import attention
from cosmos_ray.models.attention_8bit import QuantizedSelfAttention, check_kernel, kernel_function
from cosmos_ray.models.attention_int8 import int8_attention
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
from jobs.options import add_engine_options, engine_options_of

KERNELS = [name for name in ATTENTION_PRECISIONS if name != "bf16"]
PROMPT = "A robot arm stacks red and blue blocks on a wooden table in a bright workshop."


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """||value - reference|| / ||reference|| (Frobenius), in float64."""
    value, reference = value.double(), reference.double()
    return float((value - reference).norm() / reference.norm())


def psnr(frames: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of uint8 frames against `reference` (inf when equal)."""
    mse = float(np.mean((frames.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def usable_kernels(names: list[str], device: torch.device, dtype: torch.dtype, recorder: Recorder) -> list[str]:
    """The kernels of `names` that can run here; a line with the reason for each that cannot."""
    usable = []
    for name in names:
        try:
            check_kernel(name, device, dtype, head_dim=128)
            usable.append(name)
        except RuntimeError as error:
            recorder.emit("kernel_unavailable", kernel=name, reason=str(error))
    return usable


def attention_inputs(
    kind: str, heads: int, tokens: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """q, k, v (1, tokens, heads, 128): random normal ("random"), or with K offset by a per-head mean and a few
    channels 8x larger, as RMS-normed keys with learned scales can be ("dit")."""
    g = torch.Generator(device).manual_seed(heads)
    q, k, v = (torch.randn(1, tokens, heads, 128, device=device, generator=g) for _ in range(3))
    if kind == "dit":
        k = k + 2 * torch.randn(1, 1, heads, 128, device=device, generator=g)
        k[..., :4] *= 8
    return tuple(t.to(dtype) for t in (q, k, v))


def kernel_part(args: argparse.Namespace, kernels: list[str], recorder: Recorder) -> None:
    device, dtype = torch.device(args.device), args.torch_dtype
    tokens = 96 if args.smoke else 84_480
    for heads in (2,) if args.smoke else (16, 40):
        for kind in ("random", "dit"):
            q, k, v = attention_inputs(kind, heads, tokens, device, dtype)
            exact = attention(q.float(), k.float(), v.float(), backend="efficient" if device.type == "cuda" else "math")
            full = attention(q, k, v)
            flops = 4 * tokens * tokens * heads * 128
            candidates: dict[str, Callable[..., torch.Tensor]] = {"bf16": attention}
            candidates.update({name: kernel_function(name) for name in kernels})
            if "int8" in kernels:  # our kernel's other formats: the error share of each rounding, and their speed
                for qk, pv in (("int8", "fp16"), ("fp8", "fp8"), ("fp8", "fp16")):
                    candidates[f"int8[qk={qk},pv={pv}]"] = partial(int8_attention, qk=qk, pv=pv)
            for name, attend in candidates.items():
                out = attend(q, k, v)
                ms = time_ms(partial(attend, q, k, v), device, args.warmup, args.iters)
                recorder.emit(
                    "attention_kernel",
                    kernel=name,
                    inputs=kind,
                    shape=[1, tokens, heads, 128],
                    ms=round(ms, 2),
                    tflops_eq=round(tflops(flops, ms), 1),
                    rel_err_vs_fp32=float(f"{relative_error(out, exact):.3g}"),
                    rel_err_vs_bf16=float(f"{relative_error(out, full):.3g}"),
                )


def step_part(args: argparse.Namespace, kernels: list[str], recorder: Recorder) -> None:
    device, dtype = torch.device(args.device), args.torch_dtype
    model_recipe = get_model("2B/post-trained")
    cfg = DiTConfig.of_model(model_recipe, "tiny" if args.smoke else None)
    latent = (3, 8, 12) if args.smoke else (24, 88, 160)
    text_len = 16 if args.smoke else 512
    tokens = latent[0] * latent[1] * latent[2] // (cfg.patch_temporal * cfg.patch_spatial**2)
    flops = 2 * sum(forward_flops(cfg, tokens, text_len).values())
    torch.manual_seed(0)
    with torch.device(device):
        dit = MiniTrainDiT(cfg)
    dit.cast(dtype).eval().requires_grad_(False)
    inputs = make_inputs(cfg, 2, latent, text_len, device, dtype)
    settings = ["bf16", *kernels]

    def run(kernel: str) -> torch.Tensor:
        dit.quantized_attention = quantized(kernel)
        return dit(**inputs)

    for compiled in (mode == "compiled" for mode in args.step_modes):
        if compiled:  # each kernel is a recompile: bf16 and the first of --kernels only
            dit.compile_blocks(dynamic=False)
            settings = settings[:2]
        with torch.no_grad():
            reference = run("bf16").float()
            for kernel in settings:
                velocity = run(kernel).float()
                ms = time_ms(partial(run, kernel), device, args.warmup, args.iters)
                recorder.emit(
                    "guided_step",
                    kernel=kernel,
                    compiled=compiled,
                    tokens=tokens,
                    ms=round(ms, 1),
                    tflops_eq=round(tflops(flops, ms), 1),
                    velocity_rel_err_vs_bf16=float(f"{relative_error(velocity, reference):.3g}"),
                )


def quantized(kernel: str, first: int = 0, last: int = 0) -> QuantizedSelfAttention:
    """The DiT's self-attention all in `kernel` except the first/last evaluations; announced as evaluation 0 of
    1 when nothing is kept bf16 (a bare DiT call has no generation around it)."""
    attention = QuantizedSelfAttention(AttentionPrecision(kernel, first, last) if kernel != "bf16" else BF16_ATTENTION)
    attention.evaluation(0, 1)
    return attention


class Recording:
    """Keeps every DiT call's inputs and output (to replay them with another kernel), while attached."""

    def __init__(self, dit: MiniTrainDiT):
        self.calls: list[tuple[tuple, dict, torch.Tensor]] = []
        self.handle = dit.register_forward_hook(self.keep, with_kwargs=True)

    def keep(self, module: torch.nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        clone = lambda value: value.clone() if isinstance(value, torch.Tensor) else value  # noqa: E731
        kept = {name: clone(value) for name, value in kwargs.items()}
        self.calls.append((tuple(map(clone, args)), kept, out.clone()))


def clip_part(args: argparse.Namespace, kernels: list[str], recorder: Recorder) -> None:
    for model in args.clip_models:
        options = dataclasses.replace(args.engine, model=model)
        generator = Generator.from_options(options, device=args.device)
        spec = GenerationSpec(
            name="precision",
            inference_type="text2world",
            prompt=PROMPT,
            num_steps=args.clip_steps,
            seed=1,
            cosmos_ray_num_frames=5 if args.smoke else None,
        ).generations()[0]
        timings: dict[str, float] = {}
        recording = Recording(generator.dit)
        reference, ref_s = timed_clip(generator, spec, BF16_ATTENTION, timings)
        recording.handle.remove()
        recorder.emit(
            "clip", model=model, kernel="bf16", steps=spec.num_steps, clip_s=ref_s, timings_s=rounded(timings)
        )
        with torch.no_grad():
            for kernel in kernels:
                generator.dit.quantized_attention = quantized(kernel)
                errors = [
                    relative_error(generator.dit(*call_args, **call_kwargs).float(), out.float())
                    for call_args, call_kwargs, out in recording.calls
                ]
                recorder.emit(
                    "clip_evaluation_errors",
                    model=model,
                    kernel=kernel,
                    velocity_rel_err_per_evaluation=[float(f"{e:.3g}") for e in errors],
                )
                for first, last in args.schedules:
                    precision = AttentionPrecision(kernel, first, last)
                    timings = {}
                    result, clip_s = timed_clip(generator, spec, precision, timings)
                    recorder.emit(
                        "clip",
                        model=model,
                        kernel=kernel,
                        schedule=str(precision),
                        steps=spec.num_steps,
                        clip_s=clip_s,
                        timings_s=rounded(timings),
                        latents_rel_err_vs_bf16=float(f"{relative_error(result[0], reference[0]):.3g}"),
                        frames_psnr_vs_bf16_db=round(psnr(result[1], reference[1]), 2),
                    )
        del generator, recording
        torch.cuda.empty_cache() if torch.cuda.is_available() else None


def rounded(timings: dict[str, float]) -> dict[str, float]:
    return {stage: round(seconds, 3) for stage, seconds in timings.items()}


def timed_clip(
    generator: Generator, spec: GenerationSpec, precision: AttentionPrecision, timings: dict[str, float]
) -> tuple[tuple[torch.Tensor, np.ndarray], float]:
    """((final latents, uint8 frames), seconds) of one generation of `spec` with `precision`."""
    generator.dit.quantized_attention = QuantizedSelfAttention(precision)
    start = time.perf_counter()
    latents = generator.generate_latents(spec, timings=timings)
    with generator.timed("decode", timings):
        video = generator.decode(latents)
    frames = ((video[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
    return (latents, frames), round(time.perf_counter() - start, 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, warmup=1, iters=3)
    add_engine_options(parser, default_preset="random-2B")
    parser.add_argument("--parts", nargs="+", choices=["kernel", "step", "clip"], default=["kernel", "step", "clip"])
    parser.add_argument("--kernels", nargs="+", choices=KERNELS, default=KERNELS, help="8-bit kernels to compare")
    parser.add_argument(
        "--step-modes", nargs="+", choices=["eager", "compiled"], default=["eager", "compiled"], help="step part"
    )
    parser.add_argument("--clip-models", nargs="+", default=["2B/distilled", "2B/post-trained"])
    parser.add_argument("--clip-steps", type=int, default=4)
    parser.add_argument(
        "--schedules",
        nargs="+",
        default=["0,0", "1,1"],
        metavar="FIRST,LAST",
        help="clip part: evaluations kept bf16 at the start and the end, one run each",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.checkpoint_dir, args.clip_steps = "tiny", None, 2
    args.schedules = [tuple(int(n) for n in text.split(",")) for text in args.schedules]
    args.engine = engine_options_of(parser, args)
    args.torch_dtype = torch.bfloat16 if torch.device(args.device).type == "cuda" else torch.float32
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    recorder = Recorder(device, args.out)
    kernels = usable_kernels(args.kernels, device, args.torch_dtype, recorder)
    for part, run in (("kernel", kernel_part), ("step", step_part), ("clip", clip_part)):
        if part in args.parts:
            run(args, kernels, recorder)


if __name__ == "__main__":
    main()
