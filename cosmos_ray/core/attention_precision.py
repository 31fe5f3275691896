"""Which self-attention calls of the DiT run an 8-bit kernel: plain data, no torch, so the Ray driver side
(job options, group and Serve configs) can carry it.

The default, "bf16", is the model dtype's SDPA everywhere (the official path without SageAttention). An 8-bit
kernel (`cosmos_ray.models.attention_8bit` has them) quantizes the DiT's self-attention, the 85 % of its
FLOPs; cross-attention over the 512 text tokens always stays in the model dtype. The hybrid schedule keeps
the first and last denoising evaluations and some blocks at full precision, where 8-bit error costs most
(the defaults, 1 and 1, follow xDiT's hybrid FP8 schedule; docs/performance.md, "8-bit attention", says what
is measured).
"""

from __future__ import annotations

from dataclasses import dataclass

FULL_PRECISION = "bf16"
# "int8": ours, Triton (INT8 QK with per-block scales and smoothed K, FP8 PV), shipped in the package (on an H100
#   not faster than bf16 yet); "fp8": cuDNN's FP8 fused attention (the `fp8-attention` extra; fastest, but its
#   FP8 output costs a large error on Hopper); "sage2": SageAttention 2, the official inference's kernel (compiled
#   by the user; the one that pays today). docs/performance.md, "8-bit attention", has the numbers.
ATTENTION_PRECISIONS = (FULL_PRECISION, "int8", "fp8", "sage2")


@dataclass(frozen=True)
class AttentionPrecision:
    """The kernel of the DiT's self-attention and where full precision is kept."""

    kernel: str = FULL_PRECISION
    # the first N velocity evaluations of a sampling run (each autoregressive window) stay full precision
    bf16_first_steps: int = 0
    bf16_last_steps: int = 0  # and the last N
    bf16_blocks: tuple[int, ...] = ()  # DiT blocks (0-based) that stay full precision in every evaluation

    def __post_init__(self) -> None:
        if self.kernel not in ATTENTION_PRECISIONS:
            raise ValueError(
                f"attention_precision must be one of {', '.join(ATTENTION_PRECISIONS)}, got {self.kernel!r}"
            )
        for name in ("bf16_first_steps", "bf16_last_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"attention_{name} must be 0 or more, got {getattr(self, name)}")
        if any(block < 0 for block in self.bf16_blocks):
            raise ValueError(f"attention_bf16_blocks must be block indices (0 or more), got {self.bf16_blocks}")

    @property
    def quantized(self) -> bool:
        return self.kernel != FULL_PRECISION

    def quantizes_evaluation(self, index: int, total: int) -> bool:
        """Whether evaluation `index` (0-based) of a generation of `total` evaluations uses the 8-bit kernel."""
        return self.quantized and self.bf16_first_steps <= index < total - self.bf16_last_steps

    def __str__(self) -> str:
        if not self.quantized:
            return FULL_PRECISION
        kept = [f"first {self.bf16_first_steps}", f"last {self.bf16_last_steps} evaluations"]
        if self.bf16_blocks:
            kept.append(f"blocks {','.join(map(str, self.bf16_blocks))}")
        return f"{self.kernel} (bf16: {', '.join(kept)})"


BF16_ATTENTION = AttentionPrecision()  # the model dtype's SDPA everywhere
