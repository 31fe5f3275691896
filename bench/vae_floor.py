"""The Wan2.1 decode's floor: what its convolutions and attention must compute and move, and what they take alone.

`trace_kernels` runs a decode on the meta device and records every convolution and attention call: its shapes,
FLOPs, output bytes and weight bytes, grouped into stages by output resolution (the trunk at the latent
resolution, then one stage per upsampling level). `stage_floors` turns that into the floor of each stage: FLOPs
at the GPU's bf16 GEMM rate, and minimal HBM bytes (each call's weights read once, every activation written
once and read once, at bf16) at its memory bandwidth; the floor is the larger. `time_kernels` times each
distinct kernel alone on the device in each way the VAE can run it (`DecodeKernels`), so the sum over a
decode shows how much of the decode's time is its convs, and which conv kernels are slow.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from bench.common import time_ms
from cosmos_ray.models.attention import attention
from cosmos_ray.models.vae import VAEConfig, WanVAE, conv3d_as_conv2d, cudnn_benchmark, stack_frames

BF16_BYTES = 2


@dataclass(frozen=True)
class Kernel:
    """One distinct convolution or attention call of a decode, with its output's stage ("HxW")."""

    op: str  # "conv2d", "conv3d" or "attention"
    shape: tuple[int, ...]  # the input's (conv) or q's (attention: B, heads, L, D)
    weight: tuple[int, ...] = ()  # conv weight shape
    padding: tuple[int, ...] = ()
    stage: str = ""
    flops: float = 0.0
    out_numel: int = 0

    @property
    def weight_numel(self) -> int:
        return math.prod(self.weight) + self.weight[0] if self.weight else 0  # + the bias

    @property
    def stacks_frames(self) -> bool:
        """A 3D conv with a temporal kernel, which `DecodeKernels.stacked_conv2d` runs as a 2D conv."""
        return self.op == "conv3d" and self.weight[2] > 1


class _Recorder(TorchFunctionMode):
    """Counts the convolution and attention calls made inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels: Counter[Kernel] = Counter()
        self.stage = ""  # the last conv's: attention belongs to the stage of the conv that made q, k, v

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in (F.conv2d, F.conv3d):
            x, weight = args[0], args[1]
            padding = kwargs.get("padding", args[4] if len(args) > 4 else 0)
            padding = tuple(padding) if isinstance(padding, (tuple, list)) else (padding,) * (weight.ndim - 2)
            self.stage = f"{out.shape[-2]}x{out.shape[-1]}"
            flops = 2.0 * out.numel() * math.prod(weight.shape[1:])
            self.kernels[
                Kernel(func.__name__, tuple(x.shape), tuple(weight.shape), padding, self.stage, flops, out.numel())
            ] += 1
        elif func is F.scaled_dot_product_attention:
            q, k = args[0], args[1]  # (B, heads, L, D), (B, heads, S, D)
            b, heads, length, dim = q.shape
            flops = 4.0 * b * heads * length * k.shape[2] * dim  # q k^T and p v
            self.kernels[Kernel("attention", tuple(q.shape), stage=self.stage, flops=flops, out_numel=out.numel())] += 1
        return out


def trace_kernels(cfg: VAEConfig, latent_shape: tuple[int, ...]) -> Counter[Kernel]:
    """Every convolution and attention call of `decode` (default kernels) on latents of `latent_shape`, with how
    often each runs."""
    with torch.device("meta"):
        vae = WanVAE(cfg)
    with _Recorder() as recorder, torch.no_grad():
        vae.decode(torch.empty(latent_shape, device="meta"))
    return recorder.kernels


def _by_resolution(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: math.prod(int(n) for n in row["stage"].split("x")))


def stage_floors(kernels: Counter[Kernel], peak_tflops: float, peak_tbps: float) -> list[dict]:
    """Per stage (by resolution, lowest first): calls, TFLOPs, minimal GB and the floor in ms."""
    stages: dict[str, dict] = {}
    for kernel, count in kernels.items():
        row = stages.setdefault(kernel.stage, {"stage": kernel.stage, "calls": 0, "flops": 0.0, "bytes": 0.0})
        row["calls"] += count
        row["flops"] += count * kernel.flops
        row["bytes"] += count * BF16_BYTES * (2 * kernel.out_numel + kernel.weight_numel)
    rows = _by_resolution(list(stages.values()))
    for row in rows:
        compute_ms, memory_ms = row["flops"] / peak_tflops / 1e9, row["bytes"] / peak_tbps / 1e9
        row.update(
            tflop=significant(row.pop("flops") / 1e12),
            gb=significant(row.pop("bytes") / 1e9),
            compute_ms=significant(compute_ms),
            memory_ms=significant(memory_ms),
            floor_ms=significant(max(compute_ms, memory_ms)),
        )
    return rows


# The ways `time_kernels` runs each kernel: (name, cuDNN benchmark, stack frames for a 3D temporal conv).
KERNEL_MODES = (
    ("cudnn", False, False),
    ("cudnn_benchmark", True, False),
    ("stacked_conv2d", False, True),
    ("stacked_conv2d+cudnn_benchmark", True, True),
)


def kernel_call(kernel: Kernel, device: torch.device, dtype: torch.dtype, stacked: bool) -> Callable[[], object]:
    """A call of `kernel` on random channels-last inputs, as the VAE makes it (`stacked`: a 3D temporal conv
    as `DecodeKernels.stacked_conv2d` runs it, the stacking copy included)."""
    if kernel.op == "attention":
        q, k, v = (torch.randn(kernel.shape, device=device, dtype=dtype).transpose(1, 2) for _ in range(3))
        return lambda: attention(q, k, v, backend="pytorch")
    layout = torch.channels_last_3d if kernel.op == "conv3d" else torch.channels_last
    x = torch.randn(kernel.shape, device=device, dtype=dtype).contiguous(memory_format=layout)
    weight = torch.randn(kernel.weight, device=device, dtype=dtype) / math.prod(kernel.weight[1:]) ** 0.5
    bias = torch.zeros(kernel.weight[0], device=device, dtype=dtype)
    if stacked and kernel.stacks_frames:
        padding = cast(tuple[int, int], kernel.padding[1:])
        return lambda: conv3d_as_conv2d(stack_frames(x, kernel.weight[2]), weight, bias, padding)
    conv = F.conv3d if kernel.op == "conv3d" else F.conv2d
    return lambda: conv(x, weight, bias, padding=kernel.padding)


def time_kernels(
    kernels: Counter[Kernel], device: torch.device, dtype: torch.dtype, warmup: int, iters: int
) -> list[dict]:
    """Each distinct kernel timed alone in each of `KERNEL_MODES` (median ms per call)."""
    rows = []
    with torch.no_grad():
        for kernel, count in kernels.items():
            row: dict = {"op": kernel.op, "shape": list(kernel.shape), "weight": list(kernel.weight)}
            row |= {"stage": kernel.stage, "calls": count, "gflop": significant(kernel.flops / 1e9)}
            for mode, benchmark, stacked in KERNEL_MODES:
                with cudnn_benchmark(benchmark):
                    row[f"{mode}_ms"] = round(
                        time_ms(kernel_call(kernel, device, dtype, stacked), device, warmup, iters), 4
                    )
            rows.append(row)
    return rows


def stage_kernel_times(rows: list[dict]) -> list[dict]:
    """Per stage, the decode's kernels timed alone and summed over their calls, per mode (ms)."""
    stages: dict[str, dict] = {}
    for row in rows:
        total = stages.setdefault(row["stage"], {"stage": row["stage"], "calls": 0, "gflop": 0.0})
        total["calls"] += row["calls"]
        total["gflop"] += row["calls"] * row["gflop"]
        for mode, *_ in KERNEL_MODES:
            total[f"{mode}_ms"] = total.get(f"{mode}_ms", 0.0) + row["calls"] * row[f"{mode}_ms"]
    out = _by_resolution(list(stages.values()))
    for total in out:
        for key in total:
            if key.endswith("_ms") or key == "gflop":
                total[key] = significant(total[key])
    return out


def significant(x: float) -> float:
    return float(f"{x:.4g}")
