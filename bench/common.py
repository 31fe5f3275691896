"""Shared benchmark helpers: timing (CUDA events on GPU), device description, JSON-lines records."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from cosmos_ray.core.dtypes import DTYPE_NAMES, default_dtype_name


def add_common_args(parser: argparse.ArgumentParser, warmup: int = 2, iters: int = 5) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, to check the script runs")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls before timing")
    parser.add_argument("--iters", type=int, default=iters, help="timed calls; the median is reported")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")


def add_dtype_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", choices=DTYPE_NAMES, default=None, help="default: bfloat16 on CUDA, float32 on CPU")


def chosen_dtype_name(name: str | None, device: torch.device) -> str:
    """The `--dtype` given, else bfloat16 on CUDA and float32 on CPU."""
    return name or default_dtype_name(device.type)


def device_info(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda}


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Median wall time of `fn` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            start_s = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start_s) * 1e3)
    return statistics.median(times)


def time_ms_and_peak_gib(
    fn: Callable[[], object], device: torch.device, warmup: int, iters: int
) -> tuple[float, float | None]:
    """(median ms, peak GiB allocated during the timed calls beyond what was allocated before; None on CPU)."""
    for _ in range(warmup):
        fn()
    before = 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    ms = time_ms(fn, device, warmup=0, iters=iters)
    peak = (torch.cuda.max_memory_allocated(device) - before) / 2**30 if device.type == "cuda" else None
    return ms, peak


def tflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e-3) / 1e12


class Recorder:
    """Prints one JSON object per measurement (with the device fields) and appends it to `out`."""

    def __init__(self, device: torch.device, out: Path | None = None):
        self.common = device_info(device)
        self.out = out

    def emit(self, name: str, **fields) -> dict:
        record = {"name": name, **fields, **self.common}
        line = json.dumps(record)
        print(line, flush=True)
        if self.out is not None:
            with self.out.open("a") as f:
                f.write(line + "\n")
        return record
