"""The torch model of the 8-bit attention scheme (cosmos_ray/models/attention_int8.py), inputs shaped like the
DiT's, and the runner of the Triton kernels on the CPU (`python -m tests.attention_int8_helpers IN OUT` under
TRITON_INTERPRET=1: a process of its own, since Triton reads that setting when the kernels are defined)."""

from __future__ import annotations

import dataclasses
import math
import sys

import torch
import torch.nn.functional as F

from cosmos_ray.models.attention_int8 import (
    FP8_MAX,
    MIN_AMAX,
    PV_FORMATS,
    QK_FORMATS,
    TILE,
    QuantizedAttentionInputs,
    padded,
)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Relative Frobenius error."""
    return ((actual.float() - expected.float()).norm() / expected.float().norm()).item()


def fp32_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, Sq, H, D) softmax attention in fp32 (the reference every error is measured against)."""
    q, k, v = (t.float().transpose(1, 2) for t in (q, k, v))  # (B, H, S, D)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2)


def random_inputs(batch, seq_q, seq_k, heads, dim, *, seed=0, device="cpu", dtype=torch.bfloat16):
    g = torch.Generator(device).manual_seed(seed)
    return tuple(
        torch.randn(batch, seq, heads, dim, generator=g, device=device).to(dtype) for seq in (seq_q, seq_k, seq_k)
    )


def dit_like_inputs(batch, seq_q, seq_k, heads, dim, *, seed=0, device="cpu", dtype=torch.bfloat16):
    """q and k as the DiT's attention sees them after its RMSNorm (unit RMS per head vector, times a gain per
    channel), K with a mean far from zero and a few large outlier channels in it; V with a mean per channel."""
    g = torch.Generator(device).manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device=device)

    def rms_normed(x, gain):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)) * gain

    # K's large values sit in a few channels and are shared by all tokens: a mean over tokens per (head, channel)
    k_mean = 2.0 * randn(heads, dim)
    k_mean[:, :3] *= 10.0
    k = randn(batch, seq_k, heads, dim) + k_mean
    # each query leans towards one key (a few large logits per row, as in the DiT's sharper heads)
    partners = torch.randint(0, seq_k, (seq_q,), generator=g, device=device)
    q = rms_normed(randn(batch, seq_q, heads, dim) + 2.0 * k[:, partners], 1 + 0.3 * randn(heads, dim))
    k = rms_normed(k, 1 + 0.3 * randn(heads, dim))
    v = randn(batch, seq_k, heads, dim) + 0.3 * randn(heads, dim)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def _to_8_bits(x: torch.Tensor, fmt: torch.dtype) -> torch.Tensor:
    """x already divided by its scale -> int8 (rounded half away from zero, as the kernel) or e4m3."""
    if fmt == torch.int8:
        return torch.where(x >= 0, x + 0.5, x - 0.5).trunc().to(torch.int8)
    return x.clamp(-FP8_MAX, FP8_MAX).to(fmt)


def _padded_tokens(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Zero rows appended along `dim` up to a multiple of TILE."""
    pad = [0, 0] * (x.ndim - 1 - dim) + [0, padded(x.shape[dim]) - x.shape[dim]]
    return F.pad(x, pad)


def reference_quantize(q, k, v, *, qk="int8", pv="fp8", smooth_k=True) -> QuantizedAttentionInputs:
    """attention_int8.quantize in torch ops (same layouts, same rounding); `smooth_k=False` leaves K's mean in."""
    batch, seq_q, heads, dim = q.shape
    seq_k = k.shape[1]
    qmax = 127.0 if qk == "int8" else FP8_MAX

    qf = _padded_tokens(q.float().transpose(1, 2), 2)  # (B, H, Sq_pad, D)
    q_scale = qf.abs().amax(-1).clamp_min(MIN_AMAX) / qmax  # (B, H, Sq_pad)
    q8 = _to_8_bits(qf / q_scale[..., None], QK_FORMATS[qk])

    kf = k.float() - k.float().mean(1, keepdim=True) if smooth_k else k.float()
    kf = _padded_tokens(kf.transpose(1, 2), 2)  # (B, H, Sk_pad, D)
    k_blocks = kf.view(batch, heads, -1, TILE, dim)
    k_scale = k_blocks.abs().amax((-1, -2)).clamp_min(MIN_AMAX) / qmax  # (B, H, Sk_pad / TILE)
    k8 = _to_8_bits(k_blocks / k_scale[..., None, None], QK_FORMATS[qk]).view_as(kf)

    v_mean = v.float().mean(1)  # (B, H, D)
    v_centered = v.float() - v_mean[:, None]
    v_scale = v_centered.abs().amax(1).clamp_min(MIN_AMAX) / FP8_MAX  # (B, H, D)
    vt = (v_centered / v_scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(PV_FORMATS[pv])
    vt = _padded_tokens(vt.permute(0, 2, 3, 1), 3)  # (B, H, D, Sk_pad)
    log2_scale = math.log2(math.e) / math.sqrt(dim)
    return QuantizedAttentionInputs(q8, q_scale * log2_scale, k8, k_scale, vt, v_scale, v_mean, seq_q, seq_k)


def scheme_error(q, k, v, *, qk: str, pv: str, smooth_k: bool = True) -> float:
    """The error of the torch model of the scheme against fp32 attention (bf16 output, as the kernel's)."""
    inputs = reference_quantize(q, k, v, qk=qk, pv=pv, smooth_k=smooth_k)
    out = simulated_attention(inputs, p_format=PV_FORMATS[pv]).to(q.dtype)
    return relative_error(out, fp32_attention(q, k, v))


def simulated_attention(inputs: QuantizedAttentionInputs, *, p_format: torch.dtype | None = None) -> torch.Tensor:
    """Attention in fp32 over the dequantized inputs -> (B, Sq, H, D): the kernel's result up to its rounding of
    P (to `p_format` here, with the row's global max where the kernel has its running max) and its sums."""
    x = inputs
    q = x.q.float()[:, :, : x.seq_q] * x.q_scale[:, :, : x.seq_q, None]  # (B, H, Sq, D)
    k = x.k.float() * x.k_scale.repeat_interleave(TILE, -1)[..., None]
    s = q @ k[:, :, : x.seq_k].transpose(-1, -2)  # (B, H, Sq, Sk), log2 units
    p = torch.exp2(s - s.amax(-1, keepdim=True)) * 256.0
    if p_format is not None:
        p = p.to(p_format).float()
    out = p @ x.vt.float()[..., : x.seq_k].transpose(-1, -2) / p.sum(-1, keepdim=True)  # (B, H, Sq, D)
    return (out * x.v_scale[:, :, None] + x.v_mean[:, :, None]).transpose(1, 2)


def _allow_numpy_scalars_in_interpreted_loops() -> None:
    """Triton 3.6's interpreter turns a runtime loop bound into an int with int() of a one-element array, which
    numpy 2.4 refuses; this takes the element instead."""
    from triton.runtime import interpreter

    patch_tensor = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched


def run_interpreted(inputs_path: str, outputs_path: str) -> None:
    """Runs the kernels on the CPU for the tensors saved at inputs_path ({"q", "k", "v"}, (B, S, H, D)):
    the quantization, the attention with the first config of each BLOCK_N, int8_attention on (B, H, S, D) storage
    seen through transposed views, and int8_attention inside torch.compile(fullgraph=True); saves them to
    outputs_path."""
    _allow_numpy_scalars_in_interpreted_loops()
    from cosmos_ray.models import attention_int8_kernels as kernels
    from cosmos_ray.models.attention_int8 import int8_attention, quantize

    tensors = torch.load(inputs_path)
    q, k, v = tensors["q"], tensors["k"], tensors["v"]
    inputs = quantize(q, k, v, qk="int8", pv="fp16")
    outputs: dict[str, object] = {"quantized": dataclasses.asdict(inputs)}
    for block_n in (64, 128):
        config = next(c for c in kernels.CONFIGS if c.kwargs["BLOCK_N"] == block_n)
        out = torch.empty_like(q)
        kernels.attend(inputs, out, config=config)
        outputs[f"out_block_n_{block_n}"] = out
    views = [t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v)]  # (B, S, H, D) of (B, H, S, D)
    outputs["out_views"] = int8_attention(*views, pv="fp16")
    compiled = torch.compile(lambda q, k, v: int8_attention(q, k, v, pv="fp16"), backend="eager", fullgraph=True)
    outputs["out_compiled"] = compiled(q, k, v)
    torch.save(outputs, outputs_path)


if __name__ == "__main__":
    run_interpreted(*sys.argv[1:])
