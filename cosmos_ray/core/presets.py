"""Random-weight model presets: plain data, no torch, so command lines can offer them as choices cheaply.

A preset has the architecture of an official model; the model's recipe (net precision, sampler, native frames,
inference types) comes from the official model it is combined with (`cosmos_ray.core.registry`).
`Generator.from_pretrained(name, model=...)` builds one (cosmos_ray/generator.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RandomPreset:
    """Random weights drawn from a fixed seed in the architecture of an official model."""

    shapes: str  # DiTConfig preset of the net: "tiny", or the released "2B" / "14B" (then only for models of that size)
    vae: str  # VAEConfig preset
    text: str  # TextEncoderConfig preset
    trained_resolution: tuple[int, int] | None  # (H, W) that resolution "none" means; None: the model's
    draw_on_cpu: bool  # same weights on every device (tiny), or drawn where they will run (fast for 2B, 14B)

    @property
    def released_size(self) -> str | None:
        """The model size whose released shapes this preset has; None for tiny (any model)."""
        return None if self.shapes == "tiny" else self.shapes


RANDOM_PRESETS = {
    # tests, CI and the README's first command: runs on a CPU in seconds
    "tiny": RandomPreset("tiny", "tiny", "tiny", (64, 96), draw_on_cpu=True),
    # the released shapes (DiT 2B or 14B, Wan2.1 VAE, Reason1 7B) with random weights: GPU benchmarks of the
    # whole pipeline without checkpoints; their videos are noise
    "random-2B": RandomPreset("2B", "wan2.1", "reason1", None, draw_on_cpu=False),
    "random-14B": RandomPreset("14B", "wan2.1", "reason1", None, draw_on_cpu=False),
}
