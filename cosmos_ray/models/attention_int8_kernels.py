"""The Triton kernels of the 8-bit attention and their launchers (`attention_int8` explains the scheme).

This module imports Triton at its top; `cosmos_ray.models.attention_int8` imports it only when a kernel runs, so
the engine imports without Triton (CI's CPU torch has none).

Layouts (all contiguous; S_pad = S rounded up to TILE = 128, the padding written as zeros):
    q8  (B*H*Sq_pad, D) int8 or fp8e4nv    q_scale (B*H*Sq_pad,) fp32, per token, times log2(e)/sqrt(D)
    k8  (B*H*Sk_pad, D) int8 or fp8e4nv    k_scale (B*H*Sk_pad/TILE,) fp32, per block of TILE keys
    vt  (B*H*D, Sk_pad) fp8e4nv or fp16    v_scale, v_mean (B*H*D,) fp32
V is stored transposed because Hopper's FP8 wgmma reads its second operand K-major: in P @ V the reduction runs
over keys, so the keys of a V tile must be contiguous.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from cosmos_ray.models.attention_int8 import MIN_AMAX, TILE, QuantizedAttentionInputs

# int32 -> fp32 without the I2F conversion, which issues at a quarter of the FP32 rate (as slow as the exp2 the
# softmax is bound by): adding the bits of 1.5 * 2**23 to an int32 x with |x| < 2**22 gives the bits of the fp32
# number 1.5 * 2**23 + x, exactly; subtracting 1.5 * 2**23 leaves x. An int8 dot over D <= 256 stays below
# 127 * 127 * 256 < 2**22.
MAGIC_BITS = tl.constexpr(0x4B400000)
MAGIC = tl.constexpr(12582912.0)
# P = exp2(s - m) <= 1 is stored times 2**8 in e4m3 (largest finite 448): a power of two, so the scale is exact,
# with headroom for exp2's approximation. It cancels against the row sum l, which sums the same scaled values.
LOG2_P_SCALE = tl.constexpr(8.0)
FP8_MAX = tl.constexpr(448.0)


@triton.jit
def _quantize_rows(
    x_ptr,  # (B, S, H, D) bf16/fp16, last dim contiguous
    mean_ptr,  # (B*H*D,) fp32 subtracted from every token when SUBTRACT_MEAN
    out_ptr,  # (B*H*S_pad, D) int8 or fp8e4nv
    scale_ptr,  # (B*H*S_pad,) fp32 when PER_TOKEN, else (B*H*S_pad/BLOCK,)
    S,
    H,
    S_pad,
    stride_b,
    stride_s,
    stride_h,
    scale_factor,  # folded into the stored scale (log2(e)/sqrt(D) for Q)
    D: tl.constexpr,
    BLOCK: tl.constexpr,
    PER_TOKEN: tl.constexpr,
    SUBTRACT_MEAN: tl.constexpr,
    MIN_AMAX: tl.constexpr,
):
    """Q or K to 8 bits with symmetric absmax scales: one per token or one per BLOCK tokens of a head."""
    block = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    tokens = block * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,)
    dims = tl.arange(0, D)
    inside = tokens < S
    rows = x_ptr + b.to(tl.int64) * stride_b + h * stride_h + tokens.to(tl.int64) * stride_s
    x = tl.load(rows[:, None] + dims[None, :], mask=inside[:, None], other=0.0).to(tl.float32)  # (BLOCK, D)
    if SUBTRACT_MEAN:
        mean = tl.load(mean_ptr + bh * D + dims)  # (D,)
        x = tl.where(inside[:, None], x - mean[None, :], 0.0)
    is_int8: tl.constexpr = out_ptr.dtype.element_ty == tl.int8
    qmax: tl.constexpr = 127.0 if is_int8 else FP8_MAX
    amax = tl.max(tl.abs(x), 1)  # (BLOCK,)
    if not PER_TOKEN:
        amax = tl.zeros_like(amax) + tl.max(amax, 0)
    # the floor keeps every scale, and so every product of a Q and a K scale, a positive normal number
    scale = tl.maximum(amax, MIN_AMAX) / qmax  # (BLOCK,)
    x = x / scale[:, None]
    if is_int8:
        x_q = tl.where(x >= 0.0, x + 0.5, x - 0.5).to(tl.int8)  # round half away from zero
    else:
        x_q = tl.clamp(x, -qmax, qmax).to(tl.float8e4nv)
    out_rows = bh.to(tl.int64) * S_pad + tokens
    tl.store(out_ptr + out_rows[:, None] * D + dims[None, :], x_q)
    if PER_TOKEN:
        tl.store(scale_ptr + out_rows, scale * scale_factor)
    else:
        tl.store(scale_ptr + bh * (S_pad // BLOCK) + block, tl.max(scale, 0) * scale_factor)


@triton.jit
def _quantize_v_transposed(
    v_ptr,  # (B, S, H, D) bf16/fp16, last dim contiguous
    mean_ptr,  # (B*H*D,) fp32
    scale_ptr,  # (B*H*D,) fp32: max |v - mean| over tokens / 448
    out_ptr,  # (B*H*D, S_pad) fp8e4nv or fp16: (v - mean) / scale, transposed
    S,
    H,
    S_pad,
    stride_b,
    stride_s,
    stride_h,
    D: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """V smoothed by its per-channel mean, scaled per channel and written transposed (keys contiguous)."""
    block = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    tokens = block * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,)
    dims = tl.arange(0, D)
    inside = tokens < S
    rows = v_ptr + b.to(tl.int64) * stride_b + h * stride_h + tokens.to(tl.int64) * stride_s
    v = tl.load(rows[:, None] + dims[None, :], mask=inside[:, None], other=0.0).to(tl.float32)  # (BLOCK, D)
    mean = tl.load(mean_ptr + bh * D + dims)
    scale = tl.load(scale_ptr + bh * D + dims)
    v = tl.where(inside[:, None], (v - mean[None, :]) / scale[None, :], 0.0)
    v = tl.clamp(v, -FP8_MAX, FP8_MAX).to(out_ptr.dtype.element_ty)
    columns = out_ptr + (bh.to(tl.int64) * D + dims) * S_pad  # (D,): row d of this head's V^T
    tl.store(columns[None, :] + tokens[:, None], v)


@triton.jit
def _attend_block(
    acc,  # (BLOCK_M, D) fp32: sum over keys so far of P' V', scaled to the running max m_i
    l_i,  # (BLOCK_M,) fp32: sum of P' so far, same scaling
    m_i,  # (BLOCK_M,) fp32: running row max of the logits, log2 units
    q,  # (BLOCK_M, D) int8/fp8
    q_scale,  # (BLOCK_M,) fp32
    k_desc,
    vt_desc,
    k_scale_ptr,  # this head's (Sk_pad/K_BLOCK,) K scales
    kv_row,  # this head's first row in k8
    vt_row,  # this head's first row in vt
    start_n,
    Sk,
    BLOCK_N: tl.constexpr,
    K_BLOCK: tl.constexpr,
    QK_INT8: tl.constexpr,
    PV_FP8: tl.constexpr,
    MASKED: tl.constexpr,
):
    """One step of the online softmax over keys start_n .. start_n + BLOCK_N."""
    k = k_desc.load([kv_row + start_n, 0])  # (BLOCK_N, D)
    if QK_INT8:
        s = tl.dot(q, k.T)  # (BLOCK_M, BLOCK_N) int32
        s = (s + MAGIC_BITS).to(tl.float32, bitcast=True) - MAGIC
    else:
        s = tl.dot(q, k.T)  # (BLOCK_M, BLOCK_N) fp32
    if MASKED:
        keys = start_n + tl.arange(0, BLOCK_N)
        s = tl.where(keys[None, :] < Sk, s, float("-inf"))
    # the row's Q scale times the block's K scale turns s into log2-scaled logits; it is positive, so the row
    # max of s scales to the row max of the logits
    c = q_scale * tl.load(k_scale_ptr + start_n // K_BLOCK)  # (BLOCK_M,)
    m_new = tl.maximum(m_i, tl.max(s, 1) * c)
    p = tl.math.exp2(s * c[:, None] - (m_new - LOG2_P_SCALE)[:, None])  # (BLOCK_M, BLOCK_N) in [0, 2**8]
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    vt = vt_desc.load([vt_row, start_n])  # (D, BLOCK_N)
    if PV_FP8:
        p = p.to(tl.float8e4nv)
    else:
        p = p.to(tl.float16)
    # a fresh accumulator per block, added in fp32: Hopper's FP8 wgmma accumulates with fewer bits than fp32,
    # fine over BLOCK_N keys, not over the whole sequence (Triton folds `dot + acc` into the dot only for
    # exact accumulation, so the addition stays)
    acc = acc * alpha[:, None] + tl.dot(p, vt.T)
    return acc, l_i, m_new


def _set_block_shapes(nargs: dict[str, Any]) -> None:
    """Autotune pre-hook: the TMA descriptors' tiles follow the config's BLOCK_N."""
    nargs["k_desc"].block_shape = [nargs["BLOCK_N"], nargs["HEAD_DIM"]]
    nargs["vt_desc"].block_shape = [nargs["HEAD_DIM"], nargs["BLOCK_N"]]


# BLOCK_M is Q's padding (TILE); BLOCK_N divides the block of keys that shares a K scale (TILE). 8 warps (two
# warpgroups of 64 query rows): with 4, ptxas spills at D = 128 (Triton 3.6, sm_90a), for every BLOCK_N.
CONFIGS = [
    triton.Config({"BLOCK_M": 128, "BLOCK_N": block_n}, num_warps=8, num_stages=stages, pre_hook=_set_block_shapes)
    for block_n in (64, 128)
    for stages in (2, 3, 4)
]


@triton.jit
def _attention(
    q_ptr,  # (B*H*Sq_pad, D) int8/fp8
    q_scale_ptr,  # (B*H*Sq_pad,) fp32
    k_desc,  # TMA descriptor of k8 (B*H*Sk_pad, D), tile (BLOCK_N, D)
    k_scale_ptr,  # (B*H*Sk_pad/K_BLOCK,) fp32
    vt_desc,  # TMA descriptor of vt (B*H*D, Sk_pad), tile (D, BLOCK_N)
    v_scale_ptr,  # (B*H*D,) fp32
    v_mean_ptr,  # (B*H*D,) fp32
    out_ptr,  # (B, Sq, H, D) bf16/fp16
    Sq,
    Sk,
    H,
    Sq_pad,
    Sk_pad,
    stride_ob,
    stride_os,
    stride_oh,
    HEAD_DIM: tl.constexpr,
    K_BLOCK: tl.constexpr,
    QK_INT8: tl.constexpr,
    PV_FP8: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """softmax(Q K^T / sqrt(D)) V for BLOCK_M queries of one (batch, head), all keys."""
    tl.static_assert(K_BLOCK % BLOCK_N == 0)
    tl.static_assert(HEAD_DIM <= 256)  # keeps the int8 dot below 2**22 (MAGIC_BITS)
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    tokens = start_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) query tokens
    dims = tl.arange(0, HEAD_DIM)
    q_rows = bh.to(tl.int64) * Sq_pad + tokens
    q = tl.load(q_ptr + q_rows[:, None] * HEAD_DIM + dims[None, :])  # (BLOCK_M, D)
    q_scale = tl.load(q_scale_ptr + q_rows)  # (BLOCK_M,)
    k_scale_ptr += bh * (Sk_pad // K_BLOCK)
    kv_row = bh * Sk_pad
    vt_row = bh * HEAD_DIM

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    full_blocks_end = (Sk // BLOCK_N) * BLOCK_N
    for start_n in range(0, full_blocks_end, BLOCK_N):
        acc, l_i, m_i = _attend_block(
            acc, l_i, m_i, q, q_scale, k_desc, vt_desc, k_scale_ptr, kv_row, vt_row, start_n, Sk,
            BLOCK_N, K_BLOCK, QK_INT8, PV_FP8, MASKED=False,
        )  # fmt: skip
    if full_blocks_end < Sk:  # the last, partial block: keys past Sk are masked out
        acc, l_i, m_i = _attend_block(
            acc, l_i, m_i, q, q_scale, k_desc, vt_desc, k_scale_ptr, kv_row, vt_row, full_blocks_end, Sk,
            BLOCK_N, K_BLOCK, QK_INT8, PV_FP8, MASKED=True,
        )  # fmt: skip

    # the weights sum to one, so V's mean comes back as it is; V's channel scales multiply
    v_scale = tl.load(v_scale_ptr + bh * HEAD_DIM + dims)  # (D,)
    v_mean = tl.load(v_mean_ptr + bh * HEAD_DIM + dims)
    out = acc / l_i[:, None] * v_scale[None, :] + v_mean[None, :]  # (BLOCK_M, D)
    rows = out_ptr + b.to(tl.int64) * stride_ob + h * stride_oh + tokens.to(tl.int64) * stride_os
    tl.store(rows[:, None] + dims[None, :], out.to(out_ptr.dtype.element_ty), mask=(tokens < Sq)[:, None])


# Under TRITON_INTERPRET (CPU tests) there is no timing to tune by: the first config only.
_autotuned_attention = triton.autotune(
    CONFIGS[:1] if os.environ.get("TRITON_INTERPRET") == "1" else CONFIGS,
    key=["Sq", "Sk", "H", "HEAD_DIM", "QK_INT8", "PV_FP8"],
)(_attention)


def quantize_rows(
    x: torch.Tensor,
    mean: torch.Tensor | None,
    out: torch.Tensor,
    scale: torch.Tensor,
    *,
    per_token: bool,
    scale_factor: float,
) -> None:
    """x (B, S, H, D), minus mean (B, H, D) if given -> out (B, H, S_pad, D) and scale: (B, H, S_pad) per token,
    or (B, H, S_pad / TILE) per block of TILE tokens."""
    batch, seq, heads, dim = x.shape
    padded = out.shape[2]
    _quantize_rows[(padded // TILE, batch * heads)](
        x, x if mean is None else mean, out, scale, seq, heads, padded, x.stride(0), x.stride(1), x.stride(2),
        scale_factor, D=dim, BLOCK=TILE, PER_TOKEN=per_token, SUBTRACT_MEAN=mean is not None, MIN_AMAX=MIN_AMAX,
        num_warps=16,  # a TILE x 128 fp32 tile spills below 16 warps (ptxas, sm_90a)
    )  # fmt: skip


def quantize_v_transposed(v: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor, out: torch.Tensor) -> None:
    """v (B, S, H, D) -> out (B, H, D, S_pad): (v - mean) / scale, with mean and scale (B, H, D)."""
    batch, seq, heads, dim = v.shape
    padded = out.shape[3]
    _quantize_v_transposed[(padded // TILE, batch * heads)](
        v, mean, scale, out, seq, heads, padded, v.stride(0), v.stride(1), v.stride(2), D=dim, BLOCK=TILE,
        num_warps=8,  # a TILE x 128 fp32 tile spills below 8 warps (ptxas, sm_90a)
    )  # fmt: skip


def attend(inputs: QuantizedAttentionInputs, out: torch.Tensor, *, config: triton.Config | None = None) -> None:
    """The attention over quantized inputs into out (B, Sq, H, D).

    `config` runs one of CONFIGS instead of the autotuned choice (the tests check every config)."""
    batch, heads, q_padded, dim = inputs.q.shape
    k_padded = inputs.k.shape[2]
    # tiles of one row or column here; _set_block_shapes sets them per config
    k_desc = TensorDescriptor.from_tensor(inputs.k.view(-1, dim), [1, dim])
    vt_desc = TensorDescriptor.from_tensor(inputs.vt.view(-1, k_padded), [dim, 1])
    args = (inputs.q, inputs.q_scale, k_desc, inputs.k_scale, vt_desc, inputs.v_scale, inputs.v_mean, out)
    meta = dict(
        Sq=inputs.seq_q,
        Sk=inputs.seq_k,
        H=heads,
        Sq_pad=q_padded,
        Sk_pad=k_padded,
        stride_ob=out.stride(0),
        stride_os=out.stride(1),
        stride_oh=out.stride(2),
        HEAD_DIM=dim,
        K_BLOCK=TILE,
        QK_INT8=inputs.q.dtype == torch.int8,
        PV_FP8=inputs.vt.dtype == torch.float8_e4m3fn,
    )

    def grid(kwargs: dict[str, Any]) -> tuple[int, int]:
        return (q_padded // kwargs["BLOCK_M"], batch * heads)

    if config is None:
        _autotuned_attention[grid](*args, **meta)
        return
    kwargs = {**meta, **config.kwargs}
    config.pre_hook({"k_desc": k_desc, "vt_desc": vt_desc, **kwargs})
    _attention[grid](*args, **kwargs, num_warps=config.num_warps, num_stages=config.num_stages)
