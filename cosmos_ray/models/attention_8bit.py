"""8-bit self-attention for the DiT: the kernels by name, and the schedule that says which calls use one.

A kernel is a module with `check_supported(q)` (raises, saying why it cannot run) and an attention function of
`cosmos_ray.models.attention`'s signature; `KERNELS` maps an `attention_precision` name to them, imported only
when chosen (their packages are optional). Each runs as the custom op `cosmos_ray::attention_8bit`, so a
compiled DiT calls it without tracing into Triton or cuDNN code.

`QuantizedSelfAttention` is what the DiT holds: the kernel and the `AttentionPrecision` schedule. The
generator announces each velocity evaluation (`evaluation(index, total)`); the DiT asks it for the attention
of each block (`for_block`), which is the 8-bit kernel unless that evaluation or block keeps full precision.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable
from typing import Any

import torch

from cosmos_ray.core.attention_precision import BF16_ATTENTION, AttentionPrecision
from cosmos_ray.models.attention import AttentionFn

# attention_precision -> (module, attention function); the module also has `check_supported(q)`
KERNELS: dict[str, tuple[str, str]] = {
    "int8": ("cosmos_ray.models.attention_int8", "int8_attention"),
    "fp8": ("cosmos_ray.models.attention_cudnn_fp8", "cudnn_fp8_attention"),
    "sage2": ("cosmos_ray.models.attention_sage2", "sage2_attention"),
}


def kernel_function(name: str) -> AttentionFn:
    """The attention function of 8-bit kernel `name` (its optional package imported now)."""
    module, function = KERNELS[name]
    return getattr(importlib.import_module(module), function)


def check_kernel(name: str, device: torch.device, dtype: torch.dtype, head_dim: int) -> None:
    """Raises RuntimeError naming `attention_precision` and the reason when kernel `name` cannot run on
    `device` in `dtype` (checked before the models load)."""
    module, _ = KERNELS[name]
    try:
        importlib.import_module(module).check_supported(torch.empty(1, 1, 1, head_dim, device=device, dtype=dtype))
    except (ImportError, RuntimeError, ValueError) as error:
        raise RuntimeError(f"attention_precision {name!r} cannot run here: {error}") from error


@torch.library.custom_op("cosmos_ray::attention_8bit", mutates_args=())
def attention_8bit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str) -> torch.Tensor:
    """Kernel `kernel`'s attention: q (B, Sq, H, D), k and v (B, Sk, H, D) -> contiguous (B, Sq, H, D)."""
    return kernel_function(kernel)(q, k, v).contiguous()


@attention_8bit.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str) -> torch.Tensor:
    return q.new_empty(q.shape)


class QuantizedSelfAttention:
    """The DiT's self-attention precision: which kernel, and whether this evaluation and block use it."""

    def __init__(self, precision: AttentionPrecision = BF16_ATTENTION):
        self.precision = precision
        self._now = False  # the current evaluation uses the 8-bit kernel

    def evaluation(self, index: int, total: int) -> None:
        """Announces velocity evaluation `index` (0-based) of `total` of the current sampling run (a generation,
        or one window of an autoregressive one)."""
        self._now = self.precision.quantizes_evaluation(index, total)

    def for_block(self, block: int, full_precision: AttentionFn) -> AttentionFn:
        """The self-attention of DiT block `block` in this evaluation: the 8-bit kernel, or `full_precision`."""
        if not self._now or block in self.precision.bf16_blocks:
            return full_precision
        return self._kernel

    def _kernel(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return attention_8bit(q, k, v, self.precision.kernel)


def scheduled(
    model: Callable[..., torch.Tensor], attention: QuantizedSelfAttention, total: int
) -> Callable[..., torch.Tensor]:
    """`model` (a velocity model) announcing to `attention` each of the `total` evaluations it makes."""
    calls = itertools.count()

    def evaluate(*args: Any, **kwargs: Any) -> torch.Tensor:
        attention.evaluation(next(calls), total)
        return model(*args, **kwargs)

    return evaluate
