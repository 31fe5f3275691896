"""The one attention entry point: scaled dot-product attention on (B, S, H, D) tensors.

Every attention in the engine goes through `attention`, so a backend choice (or a context-parallel
wrapper such as Ulysses, which calls it after its all-to-all) applies everywhere at once.

On CUDA, "auto" asks PyTorch's SDPA for cuDNN first (on H100 at 84,480 tokens x 16 heads x 128 it runs
at about 636 TFLOP/s against 346 for flash), then flash, memory-efficient and math, in that priority.
Elsewhere "auto" is the math kernel. "pytorch" leaves the choice to PyTorch, as a plain
`F.scaled_dot_product_attention` call does: the official Wan2.1 VAE's attention, which the VAE follows so
that its bf16 output is the official one (on the CPU PyTorch picks its flash kernel, not the math one).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

BACKENDS: dict[str, list[SDPBackend]] = {
    "cudnn": [SDPBackend.CUDNN_ATTENTION],
    "flash": [SDPBackend.FLASH_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "math": [SDPBackend.MATH],
}
CUDA_PRIORITY = [
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.MATH,
]


def sdpa_backends(backend: str, device: torch.device) -> list[SDPBackend]:
    """The SDPA kernels `backend` allows on `device`, highest priority first."""
    if backend == "auto":
        return CUDA_PRIORITY if device.type == "cuda" else BACKENDS["math"]
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; expected 'auto' or one of {sorted(BACKENDS)}")
    return BACKENDS[backend]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Softmax attention without mask: q (B, Sq, H, D), k and v (B, Sk, H, D) -> (B, Sq, H, D)."""
    # SDPA wants (B, H, S, D); the transposes are views, and the kernels read the (B, S, H, D) strides.
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if backend == "pytorch":
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
    with sdpa_kernel(sdpa_backends(backend, q.device), set_priority=True):
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, Sq, D)
    return out.transpose(1, 2)
