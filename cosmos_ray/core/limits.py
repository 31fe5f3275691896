"""Operator limits on what one spec may ask for, checked before any model loads.

One definition for every entry point and every spec format: `make_manifest` checks specs against it when it
writes a manifest, the batch job in its check stage (a spec over a limit is an invalid row, recorded with the field
and reason), and Serve on each request (422). The defaults let through everything the released models are meant
for and stop requests that can only fail late (a RoPE table or an allocation far beyond any GPU); an operator
tightens them.

Each field bounds one knob; `max_cost` bounds the work they make together (`spec_cost`): the DiT's evaluations over
every window, each weighed by what its tokens cost, in reference clips (`REFERENCE_CLIP`). Without it, an
autoregressive spec with `chunk_size` 1 would buy one full window per output frame while every single field
stayed within its limit. Each format says what it asks for (`SpecBase.work`: windows, latent frames, views,
picture, and the fields that set them), so the same checks apply to all of them.

A token's cost grows with the sequence it attends to: self-attention does 4 S D FLOPs per token and block against
the linear layers' and cross-attention's 28 D^2 + 4 x 512 D, so an evaluation of S tokens costs S (1 + S / S_0)
with S_0 = 7 D + 512 (the 2B's D = 2048: 14,848 tokens, where attention's share equals the rest). At the reference
clip's 84,480 tokens attention is 85 % of the work; the 7-camera model's 201,600 tokens cost 5.2x its evaluation,
not the 2.4x of their count (docs/performance.md measures both compositions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cosmos_ray.core.registry import DEFAULT_MODEL, MODELS, RESOLUTION_720P, OfficialModel
from cosmos_ray.core.spec import SpecError
from cosmos_ray.core.spec_formats import SPEC_FORMATS, Spec

TRAINED_PIXELS_720P = RESOLUTION_720P[0] * RESOLUTION_720P[1]  # the released models' trained resolution

LATENT_PIXELS = 16  # one DiT token per 16 x 16 pixels: the VAE's 8x compression, then the net's 2 x 2 patches
# Tokens at which an evaluation's self-attention does as many FLOPs as the rest of it (7 D + 512 text tokens, the 2B's
# D = 2048). The 14B (D = 5120) would be 36,352: its large pictures weigh up to a tenth less against its own
# reference clip than counted here.
ATTENTION_BALANCE_TOKENS = 7 * 2048 + 512


@dataclass(frozen=True)
class Cost:
    """The DiT work of one video: `windows` x `evaluations` x `passes` evaluations of `tokens` tokens each."""

    windows: int  # 1, or the autoregressive windows (chunks)
    evaluations: int  # per window: num_steps (the post-trained schedule runs one more, the distilled one at most 4)
    passes: int  # 2 with classifier-free guidance (conditional + unconditional), else 1
    tokens: int  # latent frames x (H / 16) x (W / 16) of one window, over all its views

    @property
    def work(self) -> float:
        """Token-evaluations, each token weighed by the attention over the sequence it is in."""
        per_evaluation = self.tokens * (1 + self.tokens / ATTENTION_BALANCE_TOKENS)
        return self.windows * self.evaluations * self.passes * per_evaluation

    @property
    def clips(self) -> float:
        """The work in reference clips (`REFERENCE_CLIP`)."""
        return self.work / REFERENCE_CLIP.work

    def __str__(self) -> str:
        return (
            f"{self.clips:.2f} reference clips ({self.windows} window(s) x {self.evaluations} steps x "
            f"{self.passes} pass(es) x {self.tokens} tokens)"
        )


# The unit of `max_cost`: one window of the official defaults, 93 frames (24 latent) at 704 x 1280, 35 guided
# steps; about 4 minutes of one H100 with the 2B model (docs/performance.md).
REFERENCE_CLIP = Cost(windows=1, evaluations=35, passes=2, tokens=24 * (704 // 16) * (1280 // 16))


def guidance_passes(model: OfficialModel, guidance: int) -> int:
    """DiT passes per evaluation of `model`'s sampler at `guidance`: the distilled models run one, the multiview
    recipe guides from the unconditional pass so runs both at every guidance, the others skip it at 0 (the
    samplers' `runs_unconditional`, cosmos_ray/sampling)."""
    if model.few_step:
        return 1
    return 2 if model.sampler_recipe == "multiview" or guidance != 0 else 1


def native_cost(model: OfficialModel) -> Cost:
    """The DiT work of one sample of `model` at its official defaults: one window of its `state_t` latent frames
    (of every view) at its trained resolution, 35 steps, guided (the reference clip for the base 720p models)."""
    height, width = model.trained_resolution
    return Cost(
        windows=1,
        evaluations=35,
        passes=guidance_passes(model, 7),
        tokens=model.views * model.state_t * (height // LATENT_PIXELS) * (width // LATENT_PIXELS),
    )


def spec_cost(spec: Spec, model: OfficialModel) -> Cost:
    """The DiT work of one video of `spec` on `model` (its native window, trained resolution and sampler)."""
    work = spec.work(model)
    height, width = work.height_width
    return Cost(
        windows=work.windows,
        evaluations=spec.num_steps,
        passes=guidance_passes(model, spec.guidance),
        tokens=work.views * work.latent_frames * (height // LATENT_PIXELS) * (width // LATENT_PIXELS),
    )


def format_model(spec: Spec) -> OfficialModel:
    """The model a spec of this format is checked on when none is named: the one model that reads the format, or
    the default model for the base format."""
    names = [name for name, format_class in SPEC_FORMATS.items() if isinstance(spec, format_class)]
    return MODELS[names[0] if names else DEFAULT_MODEL]


@dataclass(frozen=True)
class SpecLimits:
    """Largest frame count, picture size, step count and number of generations one spec may ask for, and the
    largest DiT work (`max_cost`, in reference clips) of each of its videos."""

    # a minute at 16 fps (autoregressive mode); one window is 93; bounds every field that sets a video's length
    # (per view): cosmos_ray_num_frames, the multiview model's num_chunks, the action model's chunk_size
    max_num_output_frames: int = field(
        default=16 * 60 + 1, metadata={"help": "largest num_output_frames (frames per view of any format)"}
    )
    max_pixels: int = field(default=1920 * 1088, metadata={"help": "largest height x width of resolution"})
    max_num_steps: int = field(default=100, metadata={"help": "largest num_steps"})  # the official default is 35
    # one row expands into this many samples in the batch job's check stage (and the driver's plan)
    max_num_generations: int = field(default=1000, metadata={"help": "largest num_generations"})
    # a minute of 720p video at the official chunking (13 windows), 35 steps, with room for more steps; one
    # 7-camera multiview sample is 5.2, an AgiBot scene 8.1; a minute at 1080p is about 64
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
        """Raise `SpecError` (sample, field, reason, what to ask for instead) for the first limit `spec` exceeds.
        `model` (default: the model that reads the spec's format; the default model for the base format) fixes
        what a window, `resolution` "none" and the guidance passes mean for the cost."""
        sample = repr(spec.name)
        if spec.num_steps > self.max_num_steps:
            raise SpecError(sample, "num_steps", f"must be at most {self.max_num_steps} here, got {spec.num_steps}")
        if spec.num_generations > self.max_num_generations:
            raise SpecError(
                sample,
                "num_generations",
                f"must be at most {self.max_num_generations} here, got {spec.num_generations}",
            )
        model = model or format_model(spec)
        work = spec.work(model)
        per_view = " per view" if work.views > 1 else ""
        for name, frames in work.frames.items():
            if frames <= self.max_num_output_frames:
                continue
            value = getattr(spec, name)
            raise SpecError(
                sample,
                name,
                f"must be at most {self.max_num_output_frames} here, got {value}"
                if value == frames  # the field is the frame count
                else f"asks for {frames} frames{per_view}, more than the {self.max_num_output_frames} allowed here "
                f"(the operator's max_num_output_frames): lower {name} to ask for at most that many, got {value}",
            )
        height, width = work.height_width
        if work.resolution_field is not None and height * width > self.max_pixels:
            asked = getattr(spec, work.resolution_field)
            raise SpecError(
                sample,
                work.resolution_field,
                f"must have at most {self.max_pixels} pixels (height x width) here, got {asked}"
                + (f" ({height}x{width}, the model's)" if asked == "none" else ""),
            )
        cost = spec_cost(spec, model)
        if cost.clips > self.max_cost:
            many_windows = cost.windows > 1 and bool(work.fewer_windows)
            fewer = [work.fewer_windows] if many_windows else []
            fewer.append("fewer num_steps")
            if work.resolution_field is not None:
                fewer.append("a smaller resolution")
            if cost.passes > guidance_passes(model, 0):
                fewer.append("guidance 0 (one pass)")
            raise SpecError(
                sample,
                work.windows_field if many_windows else "num_steps",
                f"asks for {cost} of DiT work, more than the {self.max_cost:g} allowed here (the operator's "
                "max_cost; a reference clip is one 93-frame 704x1280 window at 35 guided steps): ask for "
                + (f"{', '.join(fewer[:-1])} or {fewer[-1]}" if len(fewer) > 1 else fewer[0]),
            )
