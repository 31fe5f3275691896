"""Compute dtypes by name, for every entry point, without importing torch (the Ray driver side picks one by
name and the ranks turn it into a torch dtype with `getattr(torch, name)`)."""

from __future__ import annotations

DTYPE_NAMES = ("bfloat16", "float16", "float32")


def default_dtype_name(device_type: str) -> str:
    """bfloat16 on CUDA (the released weights' dtype), float32 elsewhere (CPU runs: tests and the tiny preset)."""
    return "bfloat16" if device_type == "cuda" else "float32"
