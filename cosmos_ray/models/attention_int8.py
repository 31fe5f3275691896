"""8-bit attention: a flash-attention forward in Triton with INT8 Q K^T and FP8 P V, shipped in the package (no
compiler for the user to run), for the DiT's self-attention on Hopper.

The scheme (the facts SageAttention 2 builds on, in our own kernel):
- K is smoothed: its mean over tokens, per (batch, head), is subtracted. Softmax is invariant to it (it adds the
  same q . mean to every logit of a row), and it removes the common offset that would otherwise spend the 8 bits.
- Q and K go to INT8 with symmetric absmax scales: one per query token (the kernel multiplies the row's scale into
  the exp2 argument anyway, so the finer grain is free) and one per block of TILE = 128 keys per head. Q's scale
  carries the softmax's 1/sqrt(D) and log2(e), so the kernel's exp2 needs no further multiply. The INT8 dot runs
  on the integer tensor cores with int32 sums (converted to fp32 by an exact bit trick, see the kernels).
- V is smoothed by its per-(batch, head, channel) mean, scaled per channel into FP8 e4m3's range and stored
  transposed (B, H, D, S), the layout Hopper's FP8 wgmma needs for the second operand of P @ V. The mean comes back
  exactly at the end: the softmax weights sum to one.
- P, the softmax numerators exp2(s - m) in [0, 1], goes to FP8 e4m3 with the fixed scale 2**8; each key block's
  P @ V starts a fresh accumulator that is added to the fp32 output accumulator (online softmax, exp2).
Options for measuring: `qk="fp8"` runs Q K^T in FP8 e4m3 (per-token/per-block scales the same) in place of INT8,
`pv="fp16"` keeps P @ V in fp16 (the error share of the FP8 P V; fp16 rather than bf16: P <= 2**8 and
V <= 448 fit its range, and it has 3 more mantissa bits).

Errors, relative Frobenius against fp32 attention (tests/test_attention_int8.py): about 3e-2 on random inputs,
most of it from rounding P and V to e4m3 (3 mantissa bits); INT8 Q K^T alone costs a few 1e-3.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import torch

TILE = 128  # query tokens per kernel program, keys per K scale; the quantized buffers are padded to it
FP8_MAX = 448.0  # the largest finite float8_e4m3fn
# the floor of an absmax before it becomes a scale: keeps every scale, and a Q scale times a K scale, a positive
# normal fp32 number (a row of zeros quantizes to zeros, its logits to zero)
MIN_AMAX = 1e-6
SUPPORTED_HEAD_DIMS = (64, 128)
QK_FORMATS = {"int8": torch.int8, "fp8": torch.float8_e4m3fn}
PV_FORMATS = {"fp8": torch.float8_e4m3fn, "fp16": torch.float16}
INSTEAD = "use the bf16 attention (cosmos_ray.models.attention.attention) instead"


@dataclass(frozen=True)
class QuantizedAttentionInputs:
    """q, k and v as the attention kernel reads them (token counts padded to a multiple of TILE with zeros)."""

    q: torch.Tensor  # (B, H, Sq_pad, D) int8 or float8_e4m3fn
    q_scale: torch.Tensor  # (B, H, Sq_pad) fp32 per token, times log2(e) / sqrt(D)
    k: torch.Tensor  # (B, H, Sk_pad, D) int8 or float8_e4m3fn: K minus its mean over tokens
    k_scale: torch.Tensor  # (B, H, Sk_pad / TILE) fp32 per block of TILE keys
    vt: torch.Tensor  # (B, H, D, Sk_pad) float8_e4m3fn or fp16: ((V - v_mean) / v_scale) transposed
    v_scale: torch.Tensor  # (B, H, D) fp32 per channel
    v_mean: torch.Tensor  # (B, H, D) fp32 per channel
    seq_q: int
    seq_k: int


def interpreting() -> bool:
    """Whether Triton runs kernels on the CPU (TRITON_INTERPRET=1, for tests without a GPU)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def check_supported(q: torch.Tensor) -> None:
    """Raise ValueError/RuntimeError saying why `int8_attention` cannot run for q (B, S, H, D) here, and what to
    use instead: Triton missing, not a CUDA tensor, a GPU without FP8 tensor cores, a head dim or dtype the kernel
    does not take."""
    if q.ndim != 4 or q.shape[-1] not in SUPPORTED_HEAD_DIMS:
        raise ValueError(
            f"8-bit attention takes q of shape (batch, tokens, heads, head_dim) with head_dim in "
            f"{SUPPORTED_HEAD_DIMS}, got {tuple(q.shape)}; {INSTEAD}"
        )
    if q.dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"8-bit attention takes bf16 or fp16 q, k and v, got {q.dtype}; cast them, or {INSTEAD}")
    try:
        import triton  # noqa: F401
    except ImportError as error:
        raise RuntimeError(
            f"8-bit attention needs Triton, which does not import here ({error}); install it (`pip install triton`, "
            f"it comes with PyTorch's Linux CUDA wheels), or {INSTEAD}"
        ) from error
    if interpreting():
        return
    if q.device.type != "cuda":
        raise ValueError(f"8-bit attention runs on CUDA tensors, got q on {q.device}; {INSTEAD}")
    major, minor = torch.cuda.get_device_capability(q.device)
    if (major, minor) < (8, 9):
        raise RuntimeError(
            f"8-bit attention needs FP8 tensor cores (compute capability >= 8.9: Ada, Hopper or newer); "
            f"{torch.cuda.get_device_name(q.device)} ({q.device}) has {major}.{minor}; {INSTEAD}"
        )


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, qk: str, pv: str) -> None:
    """Raise ValueError for q, k, v or formats `int8_attention` does not take (after `check_supported(q)`)."""
    if qk not in QK_FORMATS or pv not in PV_FORMATS:
        raise ValueError(f"8-bit attention: qk must be one of {sorted(QK_FORMATS)} and pv one of {sorted(PV_FORMATS)}")
    batch, _, heads, dim = q.shape
    if k.shape != v.shape or k.ndim != 4 or (k.shape[0], k.shape[2], k.shape[3]) != (batch, heads, dim):
        raise ValueError(
            f"8-bit attention takes k and v of shape (batch, keys, heads, head_dim) matching q {tuple(q.shape)} "
            f"in batch, heads and head_dim, got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        if tensor.dtype != q.dtype or tensor.device != q.device:
            raise ValueError(f"8-bit attention: {name} is {tensor.dtype} on {tensor.device}, q {q.dtype} on {q.device}")
        if tensor.stride(-1) != 1:
            raise ValueError(
                f"8-bit attention reads {name} with a contiguous last (head_dim) dim, got strides {tensor.stride()}; "
                f"pass {name}.contiguous()"
            )


def padded(tokens: int) -> int:
    """The token count rounded up to a multiple of TILE."""
    return -(-tokens // TILE) * TILE


def quantize(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, qk: str = "int8", pv: str = "fp8"
) -> QuantizedAttentionInputs:
    """q (B, Sq, H, D), k and v (B, Sk, H, D) -> the kernel's quantized inputs (see QuantizedAttentionInputs)."""
    from cosmos_ray.models import attention_int8_kernels as kernels

    batch, seq_q, heads, dim = q.shape
    seq_k = k.shape[1]
    device = q.device
    q8 = torch.empty(batch, heads, padded(seq_q), dim, dtype=QK_FORMATS[qk], device=device)
    q_scale = torch.empty(batch, heads, padded(seq_q), dtype=torch.float32, device=device)
    kernels.quantize_rows(q, None, q8, q_scale, per_token=True, scale_factor=math.log2(math.e) / math.sqrt(dim))

    k_mean = k.mean(dim=1, dtype=torch.float32).contiguous()  # (B, H, D)
    k8 = torch.empty(batch, heads, padded(seq_k), dim, dtype=QK_FORMATS[qk], device=device)
    k_scale = torch.empty(batch, heads, padded(seq_k) // TILE, dtype=torch.float32, device=device)
    kernels.quantize_rows(k, k_mean, k8, k_scale, per_token=False, scale_factor=1.0)

    v_mean = v.mean(dim=1, dtype=torch.float32).contiguous()  # (B, H, D)
    v_min, v_max = torch.aminmax(v, dim=1)  # (B, H, D) each
    v_amax = torch.maximum(v_max.float() - v_mean, v_mean - v_min.float())
    v_scale = (v_amax.clamp_min(MIN_AMAX) / FP8_MAX).contiguous()
    vt = torch.empty(batch, heads, dim, padded(seq_k), dtype=PV_FORMATS[pv], device=device)
    kernels.quantize_v_transposed(v, v_mean, v_scale, vt)
    return QuantizedAttentionInputs(q8, q_scale, k8, k_scale, vt, v_scale, v_mean, seq_q, seq_k)


def int8_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, qk: str = "int8", pv: str = "fp8"
) -> torch.Tensor:
    """Softmax attention without mask, scale 1/sqrt(D), in 8 bits: q (B, Sq, H, D), k and v (B, Sk, H, D), bf16 or
    fp16, any strides with a contiguous last dim -> (B, Sq, H, D) in q's dtype.

    `qk` ("int8" or "fp8") and `pv` ("fp8" or "fp16") pick the formats of the two products (module docstring).
    The first call per shape autotunes the kernel (a few seconds). A torch custom op: `torch.compile` keeps it
    in its graph, as one opaque call."""
    check_supported(q)
    check_inputs(q, k, v, qk, pv)
    return _int8_attention_op(q, k, v, qk, pv)


@torch.library.custom_op("cosmos_ray::int8_attention", mutates_args=())
def _int8_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, qk: str, pv: str) -> torch.Tensor:
    from cosmos_ray.models import attention_int8_kernels as kernels

    with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
        inputs = quantize(q, k, v, qk=qk, pv=pv)
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)  # (B, Sq, H, D)
        kernels.attend(inputs, out)
    return out


@_int8_attention_op.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, qk: str, pv: str) -> torch.Tensor:
    return torch.empty(q.shape, dtype=q.dtype, device=q.device)
