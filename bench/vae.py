"""Wan2.1 VAE speed and memory: ours (`WanVAE`) vs diffusers' `AutoencoderKLWan`, same random weights.

Workloads at the 720p default (704x1280): encode 1 frame (image2world conditioning), encode 93 frames
(video2world conditioning), decode 24 latent frames -> 93 frames (every generation). Ours runs in
channels_last_3d (its default) and in the contiguous layout; diffusers as the Cosmos2.5 pipeline calls
it (encode -> latent_dist.mode(), decode -> .sample), with the latent normalization applied outside.

    python -m bench.vae --out vae.jsonl
    python -m bench.vae --smoke --device cpu

Also times ours decoding one middle column strip of 1/N of the width (`decode(columns=...)`), the work
of one of N GPUs sharing a decode. Prints one JSON line per measurement: median ms, TFLOP/s
(convolutions + attention, counted on the meta device), peak GPU memory beyond the weights and inputs, and
the relative error vs diffusers.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.common import add_common_args, add_dtype_arg, chosen_dtype_name, time_ms_and_peak_gib
from cosmos_ray.core.registry import RESOLUTION_720P
from cosmos_ray.models.vae import VAEConfig, WanVAE
from tests.oracles import diffusers_vae


def build_pair(cfg: VAEConfig, device: torch.device, dtype: torch.dtype):
    """Our VAE with random weights, and diffusers' AutoencoderKLWan holding the same weights."""
    from diffusers.utils import logging

    logging.set_verbosity_error()  # its warning about casting with .to(dtype) does not apply to this model
    torch.manual_seed(0)
    ours = WanVAE(cfg).eval()
    theirs = diffusers_vae(ours)
    return ours.to(device, dtype).requires_grad_(False), theirs.to(device, dtype).requires_grad_(False)


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, warmup=1, iters=3)
    add_dtype_arg(parser)
    parser.add_argument("--config", choices=["wan2.1", "tiny"], default="wan2.1")
    parser.add_argument("--height", type=int, default=RESOLUTION_720P[0])
    parser.add_argument("--width", type=int, default=RESOLUTION_720P[1])
    parser.add_argument("--frames", type=int, default=93, help="pixel frames of the long encode and the decode")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its conv algorithms")
    parser.add_argument("--skip-diffusers", action="store_true")
    parser.add_argument(
        "--strips", default="2,4,8", help="also time ours decoding one middle column strip of 1/N of the width, per N"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.config, args.height, args.width, args.frames, args.warmup, args.iters = "tiny", 64, 96, 9, 0, 1
    torch.backends.cudnn.benchmark = args.cudnn_benchmark

    device = torch.device(args.device)
    args.dtype = chosen_dtype_name(args.dtype, device)
    dtype = getattr(torch, args.dtype)
    cfg = VAEConfig.preset(args.config)
    ours, theirs = build_pair(cfg, device, dtype)
    diffusers_encode, diffusers_decode = diffusers_calls(theirs, cfg)
    s, r = cfg.spatial_compression, cfg.temporal_compression
    latent_frames = 1 + (args.frames - 1) // r
    g = torch.Generator(device).manual_seed(0)
    video = torch.rand(1, 3, args.frames, args.height, args.width, generator=g, device=device).to(dtype) * 2 - 1
    latents = torch.randn(
        1, cfg.latent_channels, latent_frames, args.height // s, args.width // s, generator=g, device=device
    ).to(dtype)
    workloads = [("encode", video[:, :, :1]), ("encode", video), ("decode", latents)]

    calls: dict[str, dict[str, Callable[..., Any]]] = {
        impl: {m: partial(run_ours, ours, m, fmt) for m in ("encode", "decode")}
        for impl, fmt in (("ours", torch.channels_last_3d), ("ours_contiguous", torch.contiguous_format))
    }
    if not args.skip_diffusers:
        calls["diffusers"] = {"encode": diffusers_encode, "decode": diffusers_decode}

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    common = {
        "config": args.config,
        "dtype": args.dtype,
        "device": device_name,
        "torch": torch.__version__,
        "cudnn_benchmark": args.cudnn_benchmark,
    }
    records = []

    def emit(record: dict) -> None:
        print(json.dumps({**record, **common}), flush=True)
        records.append(record | common)

    for method, x in workloads:
        flops = count_flops(cfg, method, tuple(x.shape))
        reference = None if args.skip_diffusers else calls["diffusers"][method](x)
        for impl, methods in calls.items():
            fn = methods[method]
            err = None if reference is None or impl == "diffusers" else rel_err(fn(x), reference)
            ms, peak = time_ms_and_peak_gib(lambda: fn(x), device, args.warmup, args.iters)
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

    width = latents.shape[-1]
    for strips in [int(n) for n in args.strips.split(",") if n]:
        middle = strips // 2
        columns = slice(middle * width // strips, (middle + 1) * width // strips)
        fn = partial(run_ours, ours, "decode", torch.channels_last_3d, latents, columns=columns)
        flops = count_flops(cfg, "decode", tuple(latents.shape), columns=columns)
        ms, peak = time_ms_and_peak_gib(fn, device, args.warmup, args.iters)
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
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(record) + "\n" for record in records)


if __name__ == "__main__":
    main()
