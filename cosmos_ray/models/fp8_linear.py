"""FP8 (e4m3) GEMMs for the DiT's large linear layers, through `torch._scaled_mm` with rowwise scales.

`use_fp8_linears(dit)` swaps the linears of `FP8_LINEARS` in every block for `FP8Linear`s in place, and
`use_plain_linears(dit)` swaps them back. An `FP8Linear` is an `nn.Linear` that keeps its bf16 weight (the same
Parameter, so state dict keys, checkpoint loading, `describe_net` and the LoRA code are unchanged) and computes

    y = (q(x) * s_x) @ (q(W) * s_W)^T + b,   in bfloat16,

with q(.) the e4m3 value of a row scaled by a power of two, s_x one scale per token row (from the row's absolute
maximum, computed at every call) and s_W one scale per output channel. Power-of-two scales make the scaling exact,
so rounding to e4m3 (3 mantissa bits: at most 2^-4 relative error per element, less in the subnormal range) is the
only error; a row's largest value lands in (224, 448]. The e4m3 weight and its scales are made from the bf16
weight at the first call and again whenever the weight changed: a LoRA merge or restore writes it in place (its
version counter moves), a state dict loaded with `assign=True` or a move between devices gives it new storage.
Weights must be changed through the Parameter (`weight.copy_` under `no_grad`, as `cosmos_ray.models.lora` does),
not through `weight.data`, whose in-place changes torch does not count.

Which linears pay. GEMMs at 84,480 tokens (720p x 93 frames: 24 latent frames of 44 x 80 patches), one pass:

| linear (per block) | 2B: tokens x in x out | GFLOP | 14B: in x out | GFLOP | FP8 |
| --- | --- | --- | --- | --- | --- |
| self_attn q/k/v/output_proj | 84,480 x 2048 x 2048 | 709 each | 5120 x 5120 | 4,429 each | yes |
| cross_attn q_proj/output_proj | 84,480 x 2048 x 2048 | 709 each | 5120 x 5120 | 4,429 each | yes |
| mlp.layer1 / layer2 | 84,480 x 2048 x 8192 | 2,835 each | 5120 x 20480 | 17,717 each | yes |
| cross_attn k/v_proj | 512 text tokens x 1024 x 2048 | 2.1 each | 1024 x 5120 | 5.4 each | no |
| adaLN modulations | one row per latent frame (24) | < 0.1 | | | no |

and once per pass: `final_layer.linear` (84,480 x 2048 x 64: 22 GFLOP, 64 outputs), `x_embedder` (72 inputs:
25 GFLOP, and _scaled_mm needs multiples of 16), `crossattn_proj` (512 x 100,352 x 1024: 105 GFLOP), the
timestep embedding (a row per frame). The eight linears of `FP8_LINEARS` hold 99.9 % of the linear FLOPs; each of
them is compute-bound with an output at least 2048 wide, where halving the GEMM time outweighs quantizing the
activations (one read of the input: an FP8 GEMM saves ~2 M K N / 2 PFLOP/s and costs ~5 M K bytes / 3.35 TB/s
unfused, which pays from N ~ 1500 on an H100; under `torch.compile` the quantization fuses into the producer).
The rest stay in their own precision (the adaLN and final layer run in float32 in the reference).

Share of a step. One 2B pass at 84,480 tokens is 1,925 TFLOP: self-attention 1,637 (85.6 %: 4 x tokens^2 x 2048
per block), these linears 278 (14.4 %: 9.9 per block), everything else < 0.1 %. For the 14B (36 blocks, 5120
wide) the linears are 2,232 of 7,526 TFLOP (29.7 %). At ~650 TFLOP/s for cuDNN bf16 attention and ~750 for bf16
GEMMs, the linears take ~12 % of a 2B step and ~27 % of a 14B step; FP8 GEMMs at 1.3-1.5 PFLOP/s would save about
6 % and 13 % (estimates from FLOPs, not measurements).

Where to call it: after the DiT is loaded and cast, before or after `compile_blocks` (best before the first
compiled call, which would otherwise compile again for the new modules). Under `torch.compile` the re-quantization
check runs in a forward pre-hook of each block, outside the compiled graph (`torch.compiler.disable`), so a
compiled block reads the current e4m3 weight without a graph break inside. Entry points call
`check_supported(device)` first for a clear error; the modules themselves run wherever torch's `_scaled_mm` does
(rowwise float8 runs on the CPU too, which the tests use). Inference only: there
is no backward through `_scaled_mm` here.
"""

from __future__ import annotations

import weakref
from typing import cast

import torch
from torch import nn

from cosmos_ray.models.dit import MiniTrainDiT

# Block-relative names of the linears that run in FP8 (the table in the module docstring says why these).
FP8_LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.output_proj",
    "cross_attn.q_proj",
    "cross_attn.output_proj",
    "mlp.layer1",
    "mlp.layer2",
)
FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8_DTYPE).max  # 448
ALIGNMENT = 16  # _scaled_mm wants in and out features that are multiples of 16
ACTIVATION_DTYPES = (torch.bfloat16, torch.float32)  # a power-of-two scale up to 2^48 fits these (not float16)
_AMAX_FLOOR = 1e-12  # an all-zero row gets a finite scale (its e4m3 values are zeros)


class FP8Unavailable(RuntimeError):
    """The device cannot run FP8 GEMMs with rowwise scales."""


def quantize_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, K) -> (e4m3 (rows, K), float32 scales (rows, 1)) with t ~= e4m3 * scale.

    Each scale is the power of two that brings the row's absolute maximum into (224, 448]: the multiplication
    by its inverse is exact in `t`'s dtype, so the cast to e4m3 is the one rounding.
    """
    amax = torch.linalg.vector_norm(t, float("inf"), dim=-1, keepdim=True).float().clamp(min=_AMAX_FLOOR)
    inverse = torch.exp2(torch.floor(torch.log2(FP8_MAX / amax))).to(t.dtype)  # (rows, 1), a power of two
    return (t * inverse).to(FP8_DTYPE, memory_format=torch.contiguous_format), inverse.float().reciprocal()


class FP8Linear(nn.Linear):
    """An `nn.Linear` whose forward is an e4m3 GEMM with rowwise scales and a bfloat16 result (then cast to the
    input's dtype); the weight stays as it is, the e4m3 copy is a cache (non-persistent buffers, so it follows
    `.to()` and offloading, and stays out of the state dict)."""

    weight_fp8: torch.Tensor  # (out, in) e4m3; empty until the first call
    weight_scale: torch.Tensor  # (1, out) float32

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: torch.device | None = None):
        super().__init__(in_features, out_features, bias, device=device)
        if in_features % ALIGNMENT or out_features % ALIGNMENT:
            raise ValueError(
                f"FP8Linear: {in_features} -> {out_features} features; torch._scaled_mm needs both to be multiples "
                f"of {ALIGNMENT} (keep this layer an nn.Linear)"
            )
        self.register_buffer("weight_fp8", None, persistent=False)
        self.register_buffer("weight_scale", None, persistent=False)
        self._source: tuple | None = None  # what weight_fp8 was made from (see `_weight_key`)
        self.drop_cache()

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> FP8Linear:
        """An FP8Linear sharing `linear`'s weight and bias Parameters (nothing is copied)."""
        fp8 = cls(linear.in_features, linear.out_features, bias=False, device=torch.device("meta"))
        fp8.weight, fp8.bias = linear.weight, linear.bias
        fp8.drop_cache()
        return fp8.train(linear.training)

    def drop_cache(self) -> None:
        """Frees the e4m3 weight (empty placeholders on the weight's device); the next call makes it again."""
        device = self.weight.device
        self.weight_fp8 = torch.empty(0, dtype=FP8_DTYPE, device=device)
        self.weight_scale = torch.empty(0, device=device)
        self._source = None

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear sharing this layer's weight and bias Parameters."""
        with torch.device("meta"):
            linear = nn.Linear(self.in_features, self.out_features, bias=False)
        linear.weight, linear.bias = self.weight, self.bias
        return linear.train(self.training)

    def _weight_key(self) -> tuple:
        """Identifies the weight's values: its storage (held weakly, so a freed one cannot be mistaken for a new
        one at the same address: a dead reference equals no live one), place in it, version counter (in-place
        writes), dtype and shape."""
        weight = self.weight
        if weight.is_inference():
            raise RuntimeError(
                "FP8Linear: the weight was made under torch.inference_mode, which tracks no in-place changes, so its "
                "e4m3 copy could go stale; load and change the DiT's weights under torch.no_grad instead"
            )
        return (
            weakref.ref(weight.untyped_storage()),
            weight.data_ptr(),
            weight._version,
            weight.dtype,
            weight.shape,
        )

    def is_current(self) -> bool:
        """Whether the e4m3 weight was made from the weight as it is now, and is where the weight is (`.to()`
        moves or casts the buffers with the weight; the offloader points them back at their placeholders)."""
        cached = (self.weight_fp8.dtype, self.weight_fp8.shape, self.weight_fp8.device)
        return self._source == self._weight_key() and cached == (FP8_DTYPE, self.weight.shape, self.weight.device)

    @torch.no_grad()
    def refresh(self) -> None:
        """Re-quantizes the weight if it changed since the e4m3 copy was made (a no-op otherwise)."""
        if self.is_current():
            return
        weight_fp8, scale = quantize_rows(self.weight.float())
        self.weight_fp8, self.weight_scale = weight_fp8, scale.view(1, -1)
        self._source = self._weight_key()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out) in x's dtype."""
        if x.dtype not in ACTIVATION_DTYPES:
            raise TypeError(f"FP8Linear: activations in {x.dtype}; expected bfloat16 or float32")
        if not torch.compiler.is_compiling():  # compiled blocks refresh in their pre-hook (`use_fp8_linears`)
            self.refresh()
        rows = x.reshape(-1, self.in_features)  # (M, in)
        x_fp8, x_scale = quantize_rows(rows)
        bias = None if self.bias is None else self.bias.to(torch.bfloat16)
        out = torch._scaled_mm(
            x_fp8,
            self.weight_fp8.t(),  # (in, out), column-major as _scaled_mm wants its second operand
            scale_a=x_scale,
            scale_b=self.weight_scale,
            bias=bias,
            out_dtype=torch.bfloat16,
        )  # (M, out)
        return out.to(x.dtype).view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", e4m3 rowwise"


@torch.compiler.disable
def _refresh_block(block: nn.Module, args: tuple) -> None:
    """Forward pre-hook of a block: its FP8 linears re-quantized where their weight changed, run outside any
    compiled graph, so a compiled block never reads a stale e4m3 weight."""
    for module in block.modules():
        if isinstance(module, FP8Linear):
            module.refresh()


def _has_refresh_hook(block: nn.Module) -> bool:
    return any(hook is _refresh_block for hook in block._forward_pre_hooks.values())


def use_fp8_linears(dit: MiniTrainDiT) -> int:
    """Swaps the `FP8_LINEARS` of every block for `FP8Linear`s sharing their Parameters; returns how many linears
    run in FP8 now. Idempotent; works on any device (`meta` too: the weights are quantized at the first call)."""
    for block in dit.blocks:
        for name in FP8_LINEARS:
            parent_name, _, child = name.rpartition(".")
            parent = block.get_submodule(parent_name)
            linear = cast(nn.Linear, parent.get_submodule(child))
            if not isinstance(linear, FP8Linear):
                setattr(parent, child, FP8Linear.from_linear(linear))
        if not _has_refresh_hook(block):
            block.register_forward_pre_hook(_refresh_block)
    return sum(isinstance(m, FP8Linear) for m in dit.modules())


def use_plain_linears(dit: MiniTrainDiT) -> int:
    """The reverse of `use_fp8_linears`: every FP8Linear back to an nn.Linear sharing its Parameters (the e4m3
    copies are freed); returns how many were swapped back."""
    swapped = 0
    for block in dit.blocks:
        for name, module in list(block.named_modules()):
            if isinstance(module, FP8Linear):
                parent_name, _, child = name.rpartition(".")
                setattr(block.get_submodule(parent_name), child, module.to_linear())
                swapped += 1
        hooks = block._forward_pre_hooks
        for key in [key for key, hook in hooks.items() if hook is _refresh_block]:
            del hooks[key]
    return swapped


def check_supported(device: torch.device | str) -> None:
    """Raises FP8Unavailable, saying why, unless `device` runs e4m3 GEMMs with rowwise scales: a CUDA GPU of
    compute capability 8.9 or newer (Ada, Hopper, Blackwell) whose torch build has the rowwise `_scaled_mm`
    kernel (tried on a 16 x 16 product)."""
    device = torch.device(device)
    fallback = "run with linear precision bf16 (the default)"
    if device.type != "cuda" or not torch.cuda.is_available():
        raise FP8Unavailable(
            f"FP8 linears need a CUDA GPU (compute capability 8.9+, e.g. L40S, H100); got device {str(device)!r}"
            f"{'' if torch.cuda.is_available() else ' and torch sees no CUDA device'}: {fallback}"
        )
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        raise FP8Unavailable(
            f"FP8 linears need compute capability 8.9 or newer (Ada, Hopper, Blackwell); "
            f"{torch.cuda.get_device_name(device)} has {major}.{minor}: {fallback}"
        )
    probe = FP8Linear(ALIGNMENT, ALIGNMENT, bias=False, device=device)
    try:
        probe(torch.ones(ALIGNMENT, ALIGNMENT, device=device, dtype=torch.bfloat16))
    except RuntimeError as error:
        raise FP8Unavailable(
            f"torch {torch.__version__} cannot run an e4m3 GEMM with rowwise scales on "
            f"{torch.cuda.get_device_name(device)} ({str(error).splitlines()[0]}): {fallback}"
        ) from error
