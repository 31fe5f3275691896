"""Wan2.1 VAE speed and memory: ours (`WanVAE`) vs diffusers' `AutoencoderKLWan`, same random weights; the
decode's floor; and the ways ours can decode faster (`DecodeKernels`, `compile_decoder`).

Workloads at the 720p default (704x1280): encode 1 frame (image2world conditioning), encode 93 frames
(video2world conditioning), decode 24 latent frames -> 93 frames (every generation). Parts (`--parts`):

- diffusers: ours in channels_last_3d (its default) and in the contiguous layout against diffusers as the
  Cosmos2.5 pipeline calls it (encode -> latent_dist.mode(), decode -> .sample, the latent normalization
  applied outside), with the relative error vs diffusers.
- strips: ours decoding one middle column strip of 1/N of the width (`decode(columns=...)`), the work of one
  of N GPUs sharing a decode.
- floor: the decode's FLOPs and minimal HBM bytes per stage (by resolution) and the time floor at
  `--peak-tflops` / `--peak-tbps` (`bench/vae_floor.py`); then every distinct conv and attention kernel of
  the decode timed alone, as cuDNN runs it with and without its benchmark and as a time-stacked 2D conv,
  summed per stage.
- decode-variants: today's decode and each `--variants` entry (median ms, peak memory, first-call time with
  compiling/autotuning), each variant's frames against today's bf16 frames (relative error, PSNR) and, on the
  first few latent frames, against a float32 decode (the default's own error there is the bf16 noise).

    python -m bench.vae --out vae.jsonl                                   # diffusers + strips
    python -m bench.vae --parts floor,decode-variants --out vae.jsonl
    python -m bench.vae --smoke --device cpu                              # every part, tiny

Prints one JSON line per measurement: median ms, TFLOP/s (convolutions + attention, counted on the meta
device), peak GPU memory beyond the weights and inputs.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import fields
from functools import partial
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.common import add_common_args, add_dtype_arg, chosen_dtype_name, time_ms_and_peak_gib
from bench.vae_floor import KERNEL_MODES, significant, stage_floors, stage_kernel_times, time_kernels, trace_kernels
from cosmos_ray.core.registry import RESOLUTION_720P
from cosmos_ray.models.vae import DecodeKernels, VAEConfig, WanVAE
from tests.oracles import diffusers_vae


def diffusers_of(ours: WanVAE):
    """diffusers' AutoencoderKLWan holding our VAE's weights, on its device and in its dtype."""
    from diffusers.utils import logging

    logging.set_verbosity_error()  # its warning about casting with .to(dtype) does not apply to this model
    return diffusers_vae(ours).to(ours.conv2.weight.device, ours.dtype).requires_grad_(False)


def diffusers_calls(vae, cfg: VAEConfig) -> tuple[Callable, Callable]:
    """encode/decode with diffusers' VAE, normalizing latents as the Cosmos2.5 pipeline does."""

    def stats(like):
        shape = (1, cfg.latent_channels, 1, 1, 1)
        mean = torch.tensor(cfg.latent_mean, device=like.device).view(shape)
        return mean.to(like.dtype), torch.tensor(cfg.latent_std, device=like.device).view(shape).to(like.dtype)

    @torch.no_grad()
    def encode(video):
        mu = vae.encode(video).latent_dist.mode()
        mean, std = stats(mu)
        return (mu - mean) / std

    @torch.no_grad()
    def decode(latents):
        mean, std = stats(latents)
        return vae.decode(latents * std + mean).sample

    return encode, decode


def run_ours(vae: WanVAE, method: str, memory_format: torch.memory_format, x: torch.Tensor, **kwargs):
    vae.memory_format = memory_format
    return getattr(vae, method)(x, **kwargs)


def count_flops(cfg: VAEConfig, method: str, shape: tuple[int, ...], **kwargs) -> float:
    """FLOPs of one call, traced on the meta device (no compute)."""
    with torch.device("meta"):
        vae = WanVAE(cfg)
    with FlopCounterMode(display=False) as counter:
        getattr(vae, method)(torch.empty(shape, device="meta"), **kwargs)
    return counter.get_total_flops()


def timing(flops: float, ms: float, peak_gib: float | None) -> dict:
    return {
        "ms": round(ms, 2),
        "tflops": float(f"{flops / ms / 1e9:.4g}"),
        "peak_mem_gib": None if peak_gib is None else round(peak_gib, 3),
    }


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def psnr_db(a: torch.Tensor, reference: torch.Tensor) -> float | None:
    """PSNR of pixels in [-1, 1] (peak-to-peak 2) against `reference`; None where they are identical."""
    mse = (a.float() - reference.float()).square().mean().item()
    return None if mse == 0 else round(10 * math.log10(4 / mse), 2)


def error_fields(video: torch.Tensor, reference: torch.Tensor, against: str) -> dict:
    return {
        f"rel_err_vs_{against}": float(f"{rel_err(video, reference):.3g}"),
        f"psnr_vs_{against}_db": psnr_db(video, reference),
        f"max_abs_vs_{against}": float(f"{(video.float() - reference.float()).abs().max().item():.3g}"),
    }


VARIANT_TOKENS = ("cudnn_benchmark", "stacked_conv2d", "fused_norm", "compiled", "max_autotune")
DEFAULT_VARIANTS = (
    "default,cudnn_benchmark,fused_norm,stacked_conv2d,stacked_conv2d+cudnn_benchmark,"
    "fused_norm+stacked_conv2d+cudnn_benchmark,compiled+cudnn_benchmark,compiled+stacked_conv2d+cudnn_benchmark"
)


def variant_vae(base: WanVAE, name: str) -> WanVAE:
    """A copy of `base` that decodes as variant `name`: "default" (today's path), or "+"-joined `DecodeKernels`
    fields, "compiled" (`compile_decoder()`) and "max_autotune" (`compile_decoder(max_autotune=True)`)."""
    tokens = set() if name == "default" else set(name.split("+"))
    if unknown := tokens - set(VARIANT_TOKENS):
        raise ValueError(f"unknown part(s) {sorted(unknown)} of decode variant {name!r}; use {VARIANT_TOKENS}")
    vae = copy.deepcopy(base)
    vae.use_decode_kernels(DecodeKernels(**{f.name: f.name in tokens for f in fields(DecodeKernels)}))
    if tokens & {"compiled", "max_autotune"}:
        vae.compile_decoder(max_autotune="max_autotune" in tokens)
    return vae


def float32_decode(base: WanVAE, latents: torch.Tensor) -> torch.Tensor:
    """The default decode in float32 (TF32 off): the reference that shows bf16's own noise."""
    vae = copy.deepcopy(base).float()
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return vae.decode(latents.float())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def decode_variants_part(base: WanVAE, latents: torch.Tensor, args: argparse.Namespace, emit: Callable) -> None:
    """Times today's decode and each variant (median ms, peak memory, first call with compiling/autotuning),
    with each variant's error against today's bf16 frames, and on the first `--error-latent-frames` latent
    frames against a float32 decode (the default's own error there is the bf16 noise level)."""
    device = latents.device
    flops = count_flops(base.cfg, "decode", tuple(latents.shape))
    short = latents[:, :, : args.error_latent_frames]
    reference32 = float32_decode(base, short)
    names = ["default", *(n for n in args.variants.split(",") if n and n != "default")]
    today: torch.Tensor | None = None
    today_ms = None
    for name in names:
        record: dict[str, Any] = {"name": "vae.decode_variant", "variant": name, "shape": list(latents.shape)}
        try:
            torch._dynamo.reset()
            vae = variant_vae(base, name)
            decode = partial(vae.decode, latents)
            start = time.perf_counter()
            video = decode()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            record["first_call_s"] = round(time.perf_counter() - start, 2)
            ms, peak = time_ms_and_peak_gib(decode, device, max(args.warmup - 1, 0), args.iters)
            record |= timing(flops, ms, peak)
            if today is None:
                today, today_ms = video, ms
            record["speedup"] = round(today_ms / ms, 3) if today_ms else None
            record["identical_to_default"] = torch.equal(video, today)
            record |= error_fields(video, today, "default")
            record |= error_fields(vae.decode(short), reference32, "float32")
            del vae, video, decode
        except Exception as error:  # noqa: BLE001  # one failing variant must not stop the others
            record["error"] = f"{type(error).__name__}: {error}"[:2000]
        emit(record)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def floor_part(cfg: VAEConfig, latents: torch.Tensor, args: argparse.Namespace, emit: Callable) -> None:
    """The decode's floor per stage, then each distinct kernel timed alone and their sums per stage."""
    kernels = trace_kernels(cfg, tuple(latents.shape))
    stages = stage_floors(kernels, args.peak_tflops, args.peak_tbps)
    emit(
        {
            "name": "vae.decode_floor",
            "shape": list(latents.shape),
            "peak_tflops": args.peak_tflops,
            "peak_tbps": args.peak_tbps,
            "tflop": significant(sum(row["tflop"] for row in stages)),
            "gb": significant(sum(row["gb"] for row in stages)),
            "floor_ms": significant(sum(row["floor_ms"] for row in stages)),
            "stages": stages,
        }
    )
    rows = time_kernels(kernels, latents.device, latents.dtype, warmup=2, iters=args.kernel_iters)
    for row in rows:
        emit({"name": "vae.decode_kernel", **row})
    by_stage = stage_kernel_times(rows)
    totals = {f"{mode}_ms": significant(sum(row[f"{mode}_ms"] for row in by_stage)) for mode, *_ in KERNEL_MODES}
    emit({"name": "vae.decode_kernels_alone", "shape": list(latents.shape), **totals, "stages": by_stage})


def diffusers_part(ours: WanVAE, cfg: VAEConfig, video, latents, args, emit: Callable) -> None:
    """Ours (channels-last and contiguous) and diffusers' AutoencoderKLWan on the three workloads."""
    theirs = diffusers_of(ours)
    diffusers_encode, diffusers_decode = diffusers_calls(theirs, cfg)
    workloads = [("encode", video[:, :, :1]), ("encode", video), ("decode", latents)]
    calls: dict[str, dict[str, Callable[..., Any]]] = {
        impl: {m: partial(run_ours, ours, m, fmt) for m in ("encode", "decode")}
        for impl, fmt in (("ours", torch.channels_last_3d), ("ours_contiguous", torch.contiguous_format))
    }
    if not args.skip_diffusers:
        calls["diffusers"] = {"encode": diffusers_encode, "decode": diffusers_decode}
    for method, x in workloads:
        flops = count_flops(cfg, method, tuple(x.shape))
        reference = None if args.skip_diffusers else calls["diffusers"][method](x)
        for impl, methods in calls.items():
            fn = methods[method]
            err = None if reference is None or impl == "diffusers" else rel_err(fn(x), reference)
            ms, peak = time_ms_and_peak_gib(lambda: fn(x), x.device, args.warmup, args.iters)
            emit(
                {
                    "name": f"vae.{method}",
                    "impl": impl,
                    "shape": list(x.shape),
                    **timing(flops, ms, peak),
                    "rel_err_vs_diffusers": err,
                }
            )
        del reference
    ours.memory_format = torch.channels_last_3d


def strips_part(ours: WanVAE, cfg: VAEConfig, latents: torch.Tensor, args, emit: Callable) -> None:
    """Ours decoding one middle column strip of 1/N of the width, per N."""
    width = latents.shape[-1]
    for strips in [int(n) for n in args.strips.split(",") if n]:
        middle = strips // 2
        columns = slice(middle * width // strips, (middle + 1) * width // strips)
        fn = partial(run_ours, ours, "decode", torch.channels_last_3d, latents, columns=columns)
        flops = count_flops(cfg, "decode", tuple(latents.shape), columns=columns)
        ms, peak = time_ms_and_peak_gib(fn, latents.device, args.warmup, args.iters)
        emit(
            {
                "name": "vae.decode_columns",
                "impl": "ours",
                "shape": list(latents.shape),
                "strips": strips,
                "columns": [columns.start, columns.stop],
                **timing(flops, ms, peak),
            }
        )


PARTS = ("diffusers", "strips", "floor", "decode-variants")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, warmup=1, iters=3)
    add_dtype_arg(parser)
    parser.add_argument("--config", choices=["wan2.1", "tiny"], default="wan2.1")
    parser.add_argument("--height", type=int, default=RESOLUTION_720P[0])
    parser.add_argument("--width", type=int, default=RESOLUTION_720P[1])
    parser.add_argument("--frames", type=int, default=93, help="pixel frames of the long encode and the decode")
    parser.add_argument(
        "--parts", help=f"comma-separated, of {', '.join(PARTS)} (default: diffusers,strips; with --smoke: all)"
    )
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its conv algorithms")
    parser.add_argument("--skip-diffusers", action="store_true", help="diffusers part: time ours alone")
    parser.add_argument(
        "--strips", default="2,4,8", help="strips part: time ours decoding a middle strip of 1/N of the width, per N"
    )
    parser.add_argument(
        "--variants",
        help="decode-variants part: comma-separated; each 'default' or '+'-joined "
        f"{', '.join(VARIANT_TOKENS)} (today's decode always runs first, as the reference; compiled ones "
        f"compile four graphs on their first call, minutes on a GPU). Default: {DEFAULT_VARIANTS}",
    )
    parser.add_argument(
        "--error-latent-frames", type=int, default=3, help="decode-variants part: latent frames of the float32 check"
    )
    parser.add_argument("--peak-tflops", type=float, default=765.0, help="floor part: bf16 GEMM rate (H100: ~765)")
    parser.add_argument("--peak-tbps", type=float, default=3.35, help="floor part: HBM TB/s (H100 SXM: 3.35)")
    parser.add_argument("--kernel-iters", type=int, default=5, help="floor part: timed calls per kernel alone")
    args = parser.parse_args(argv)
    if args.smoke:
        args.config, args.height, args.width, args.frames, args.warmup, args.iters = "tiny", 64, 96, 9, 1, 1
        args.kernel_iters, args.error_latent_frames = 1, 2
        args.parts = args.parts or ",".join(PARTS)
        args.variants = args.variants or ",".join(["default", *VARIANT_TOKENS[:3], "compiled+stacked_conv2d"])
    args.parts = args.parts or "diffusers,strips"
    args.variants = args.variants or DEFAULT_VARIANTS
    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown --parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark

    device = torch.device(args.device)
    args.dtype = chosen_dtype_name(args.dtype, device)
    dtype = getattr(torch, args.dtype)
    cfg = VAEConfig.preset(args.config)
    torch.manual_seed(0)
    ours = WanVAE(cfg).eval().to(device, dtype).requires_grad_(False)
    s, r = cfg.spatial_compression, cfg.temporal_compression
    latent_frames = 1 + (args.frames - 1) // r
    g = torch.Generator(device).manual_seed(0)
    video = torch.rand(1, 3, args.frames, args.height, args.width, generator=g, device=device).to(dtype) * 2 - 1
    latents = torch.randn(
        1, cfg.latent_channels, latent_frames, args.height // s, args.width // s, generator=g, device=device
    ).to(dtype)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    common = {
        "config": args.config,
        "dtype": args.dtype,
        "device": device_name,
        "torch": torch.__version__,
        "cudnn_benchmark": args.cudnn_benchmark,
    }

    def emit(record: dict) -> None:
        line = json.dumps(record | common)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")

    run_part = {
        "diffusers": lambda: diffusers_part(ours, cfg, video, latents, args, emit),
        "strips": lambda: strips_part(ours, cfg, latents, args, emit),
        "floor": lambda: floor_part(cfg, latents, args, emit),
        "decode-variants": lambda: decode_variants_part(ours, latents, args, emit),
    }
    for part in parts:
        try:
            run_part[part]()
        except Exception as error:  # noqa: BLE001  # one failing part must not stop the others
            emit({"name": f"vae.{part}", "error": f"{type(error).__name__}: {error}"[:2000]})


if __name__ == "__main__":
    main()
