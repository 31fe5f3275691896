"""Random-weight model presets: plain data, no torch, so command lines can offer them as choices cheaply.

`Generator.from_pretrained(name)` builds one (cosmos_ray/generator.py).
"""

from __future__ import annotations

from dataclasses import dataclass

RESOLUTION_720P = (704, 1280)  # the 2B models' trained resolution (16:9 at 720p)
# The released models' native clip: `state_t` latent frames (their experiment configs), 1 + 4 (24 - 1) = 93
# pixel frames. The official non-autoregressive inference always samples this many.
STATE_T_2B = 24


@dataclass(frozen=True)
class RandomPreset:
    """A model with random weights drawn from a fixed seed: the same architecture as the released one."""

    dit: str  # DiTConfig preset
    vae: str  # VAEConfig preset
    text: str  # TextEncoderConfig preset
    trained_resolution: tuple[int, int]  # (H, W) that resolution "none" means
    state_t: int  # native latent frames of a generation
    draw_on_cpu: bool  # same weights on every device (tiny), or drawn on the device itself (fast for 2B)


RANDOM_PRESETS = {
    # tests, CI and the README's first command: runs on a CPU in seconds; the released models' 93 frames
    "tiny": RandomPreset("tiny", "tiny", "tiny", (64, 96), STATE_T_2B, draw_on_cpu=True),
    # the released 2B shapes (DiT 2B, Wan2.1 VAE, Reason1 7B) with random weights: GPU benchmarks of the
    # whole pipeline without checkpoints; its videos are noise
    "random-2B": RandomPreset("2B", "wan2.1", "reason1", RESOLUTION_720P, STATE_T_2B, draw_on_cpu=False),
}
