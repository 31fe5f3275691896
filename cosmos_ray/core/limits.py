"""Operator limits on what one spec may ask for, checked before any model loads.

One definition for every entry point: `make_manifest` checks specs against it when it writes a manifest, the
batch job in its check stage (a spec over a limit is an invalid row, recorded with the field and reason), and
Serve on each request (422). The defaults let through everything the released models are meant for and stop
requests that can only fail late (a RoPE table or an allocation far beyond any GPU); an operator tightens them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cosmos_ray.core.registry import RESOLUTION_720P
from cosmos_ray.core.spec import GenerationSpec, SpecError

TRAINED_PIXELS_720P = RESOLUTION_720P[0] * RESOLUTION_720P[1]  # the released models' trained resolution


@dataclass(frozen=True)
class SpecLimits:
    """Largest frame count, picture size, step count and number of generations one spec may ask for."""

    # a minute at 16 fps (autoregressive mode); one window is 93; also bounds cosmos_ray_num_frames
    max_num_output_frames: int = field(default=16 * 60 + 1, metadata={"help": "largest num_output_frames"})
    max_pixels: int = field(default=1920 * 1088, metadata={"help": "largest height x width of resolution"})
    max_num_steps: int = field(default=100, metadata={"help": "largest num_steps"})  # the official default is 35
    # one row expands into this many samples in the batch job's check stage (and the driver's plan)
    max_num_generations: int = field(default=1000, metadata={"help": "largest num_generations"})

    def __post_init__(self) -> None:
        for name in ("max_num_output_frames", "max_pixels", "max_num_steps", "max_num_generations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def check(self, spec: GenerationSpec) -> None:
        """Raise `SpecError` (sample, field, reason) for the first limit `spec` exceeds."""
        sample = repr(spec.name)
        if spec.enable_autoregressive and spec.num_output_frames > self.max_num_output_frames:  # else unused
            raise SpecError(
                sample,
                "num_output_frames",
                f"must be at most {self.max_num_output_frames} here, got {spec.num_output_frames}",
            )
        if spec.cosmos_ray_num_frames is not None and spec.cosmos_ray_num_frames > self.max_num_output_frames:
            raise SpecError(
                sample,
                "cosmos_ray_num_frames",
                f"must be at most {self.max_num_output_frames} here, got {spec.cosmos_ray_num_frames}",
            )
        if spec.height_width is not None and spec.height_width[0] * spec.height_width[1] > self.max_pixels:
            raise SpecError(
                sample,
                "resolution",
                f"must have at most {self.max_pixels} pixels (height x width) here, got {spec.resolution}",
            )
        if spec.num_steps > self.max_num_steps:
            raise SpecError(sample, "num_steps", f"must be at most {self.max_num_steps} here, got {spec.num_steps}")
        if spec.num_generations > self.max_num_generations:
            raise SpecError(
                sample,
                "num_generations",
                f"must be at most {self.max_num_generations} here, got {spec.num_generations}",
            )
