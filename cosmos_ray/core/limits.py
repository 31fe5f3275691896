"""Operator limits on what one spec may ask for, checked before any model loads.

One definition for every entry point: `make_manifest` checks specs against it when it writes a manifest, the
batch job in its check stage (a spec over a limit is an invalid row, recorded with the field and reason), and
Serve on each request (422). The defaults let through everything the released models are meant for and stop
requests that can only fail late (a RoPE table or an allocation far beyond any GPU); an operator tightens them.

Each field bounds one knob; `max_cost` bounds the work they make together (`spec_cost`): the DiT's evaluations
times the tokens each one processes, over every window, in reference clips (`REFERENCE_CLIP`). Without it, an
autoregressive spec with `chunk_size` 1 would buy one full window per output frame while every single field
stayed within its limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cosmos_ray.core.registry import DEFAULT_MODEL, MODELS, RESOLUTION_720P, OfficialModel
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.core.spec_rules import count_chunks

TRAINED_PIXELS_720P = RESOLUTION_720P[0] * RESOLUTION_720P[1]  # the released models' trained resolution

LATENT_PIXELS = 16  # one DiT token per 16 x 16 pixels: the VAE's 8x compression, then the net's 2 x 2 patches
TEMPORAL_COMPRESSION = 4  # pixel frames 1 + 4 (t - 1) are t latent frames (the Wan VAE)


@dataclass(frozen=True)
class Cost:
    """The DiT work of one video: `windows` x `evaluations` x `passes` evaluations of `tokens` tokens each."""

    windows: int  # 1, or the autoregressive windows
    evaluations: int  # per window: num_steps (the post-trained schedule runs one more, the distilled one at most 4)
    passes: int  # 2 with classifier-free guidance (conditional + unconditional), else 1
    tokens: int  # latent frames x (H / 16) x (W / 16) of one window

    @property
    def token_evaluations(self) -> int:
        return self.windows * self.evaluations * self.passes * self.tokens

    @property
    def clips(self) -> float:
        """The work in reference clips (`REFERENCE_CLIP`)."""
        return self.token_evaluations / REFERENCE_CLIP.token_evaluations

    def __str__(self) -> str:
        return (
            f"{self.clips:.2f} reference clips ({self.windows} window(s) x {self.evaluations} steps x "
            f"{self.passes} pass(es) x {self.tokens} tokens)"
        )


# The unit of `max_cost`: one window of the official defaults, 93 frames (24 latent) at 704 x 1280, 35 guided
# steps; about 4 minutes of one H100 with the 2B model (docs/performance.md).
REFERENCE_CLIP = Cost(windows=1, evaluations=35, passes=2, tokens=24 * (704 // 16) * (1280 // 16))


def spec_cost(spec: GenerationSpec, model: OfficialModel) -> Cost:
    """The DiT work of one video of `spec` on `model` (its native window, trained resolution and sampler)."""
    height, width = spec.height_width or model.trained_resolution
    if spec.enable_autoregressive:  # every window generates the model's native frames
        windows = count_chunks(spec.num_output_frames, spec.chunk_size, spec.chunk_overlap)
        latent_frames = model.state_t
    else:
        windows = 1
        frames = spec.cosmos_ray_num_frames
        latent_frames = model.state_t if frames is None else (frames - 1) // TEMPORAL_COMPRESSION + 1
    guided = not model.few_step and spec.guidance != 0
    return Cost(
        windows=windows,
        evaluations=spec.num_steps,
        passes=2 if guided else 1,
        tokens=latent_frames * (height // LATENT_PIXELS) * (width // LATENT_PIXELS),
    )


@dataclass(frozen=True)
class SpecLimits:
    """Largest frame count, picture size, step count and number of generations one spec may ask for, and the
    largest DiT work (`max_cost`, in reference clips) of each of its videos."""

    # a minute at 16 fps (autoregressive mode); one window is 93; also bounds cosmos_ray_num_frames
    max_num_output_frames: int = field(default=16 * 60 + 1, metadata={"help": "largest num_output_frames"})
    max_pixels: int = field(default=1920 * 1088, metadata={"help": "largest height x width of resolution"})
    max_num_steps: int = field(default=100, metadata={"help": "largest num_steps"})  # the official default is 35
    # one row expands into this many samples in the batch job's check stage (and the driver's plan)
    max_num_generations: int = field(default=1000, metadata={"help": "largest num_generations"})
    # a minute of 720p video at the official chunking (13 windows), 35 steps, with room for 1080p or more steps
    max_cost: float = field(
        default=32.0,
        metadata={"help": "largest DiT work of one video, in reference clips (one 93-frame 720p window, 35 steps)"},
    )

    def __post_init__(self) -> None:
        for name in ("max_num_output_frames", "max_pixels", "max_num_steps", "max_num_generations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.max_cost > 0:
            raise ValueError(f"max_cost must be positive, got {self.max_cost}")

    def check(self, spec: Spec, model: OfficialModel | None = None) -> None:
        """Raise `SpecError` (sample, field, reason) for the first limit `spec` exceeds. `model` (default: the
        default model) fixes what `resolution` "none" and a window mean for the cost. A multiview spec has its
        steps and generations checked; its frames and cost are not modelled yet (issue 30)."""
        sample = repr(spec.name)
        if spec.num_steps > self.max_num_steps:
            raise SpecError(sample, "num_steps", f"must be at most {self.max_num_steps} here, got {spec.num_steps}")
        if spec.num_generations > self.max_num_generations:
            raise SpecError(
                sample,
                "num_generations",
                f"must be at most {self.max_num_generations} here, got {spec.num_generations}",
            )
        if not isinstance(spec, GenerationSpec):
            return
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
        cost = spec_cost(spec, model or MODELS[DEFAULT_MODEL])
        if cost.clips > self.max_cost:
            many_windows = cost.windows > 1
            fewer_windows = "fewer windows (a larger chunk_size, a smaller chunk_overlap or num_output_frames), "
            raise SpecError(
                sample,
                "chunk_size" if many_windows else "num_steps",
                f"asks for {cost} of DiT work, more than the {self.max_cost:g} allowed here (the operator's "
                "max_cost; a reference clip is one 93-frame 704x1280 window at 35 guided steps): ask for "
                f"{fewer_windows if many_windows else ''}fewer num_steps or a smaller resolution",
            )
