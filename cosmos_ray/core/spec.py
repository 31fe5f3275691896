"""The generation spec: one sample of the official Cosmos-Predict2.5 inference JSON.

`GenerationSpec` is a pydantic model, as the official inference arguments are: the one definition that the
manifest maker, the batch job and Serve's request body share. Its JSON Schema is docs/spec.schema.json
(`cosmos_ray.core.spec_schema`, printed by `python -m jobs.spec_schema`) and Serve's OpenAPI page shows it.

`GenerationSpec.from_dict` accepts the official per-sample format
(`{"inference_type": ..., "name": ..., "prompt" | "prompt_path": ..., "input_path": ..., ...}`) with the
official defaults of the latest release, plus fields of our own: `fps` of the written video,
`num_conditional_frames`, `cosmos_ray_num_frames`, `num_generations`, and the weights that make the video,
`cosmos_ray_checkpoint` and `cosmos_ray_loras`. Anything invalid raises `SpecError` naming the sample, the
field and the reason. What the base format shares with the multiview one (`cosmos_ray.core.multiview_spec`):
parsing, `to_json`, `generations`, `for_weights` and `sample_id` is `cosmos_ray.core.spec_base.SpecBase`'s; the
multiview format's own fields are refused here with a message naming the model that reads them.

A spec means what it means to the official script: without the autoregressive mode a generation makes the
model's native number of frames (93 for the released models) whatever `num_output_frames` says.
`cosmos_ray_num_frames` (not official) asks for another length of such a single-window clip.

`enable_autoregressive` turns on the official sliding-window mode for long videos (`num_output_frames`
frames made of windows of `chunk_size` frames that share `chunk_overlap` frames; see
`cosmos_ray.autoregressive`). The official script ignores `chunk_size` and `chunk_overlap` when the mode is
off, so they are reset to their defaults then and left out of `to_dict` (and of the sample id).

`num_generations` asks for several videos of one spec: `generations()` expands it into one spec per video,
with seeds seed, seed + 1, ... (the convention of the official cookbook); each is an ordinary spec with its own
sample id.

The weights are part of what a spec means: `cosmos_ray_checkpoint` is the run's post-trained DiT checkpoint and
`cosmos_ray_loras` the LoRA adapters blended into it for this sample (None: the run's default adapters, the
entry point's `--lora`; an empty list: none). Each entry point folds its `EngineOptions` into every spec before
it takes the sample id (`for_weights`), so the id and the stored spec JSON name the checkpoint and adapters;
stock weights without adapters leave both out of `to_dict`, and with them the sample ids of such specs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from cosmos_ray.core.multiview_spec import MULTIVIEW_MODEL, MULTIVIEW_ONLY_FIELDS
from cosmos_ray.core.spec_base import (
    CONDITIONING_LATENT_FRAMES,
    INFERENCE_TYPES,
    MAX_FPS,
    TEMPORAL_COMPRESSION,
    Checkpoint,
    Guidance,
    InferenceType,
    Loras,
    NumGenerations,
    NumSteps,
    Prompt,
    SampleName,
    Seed,
    SpecBase,
    Work,
    input_digest,
    normalize_resolution,
)
from cosmos_ray.core.spec_errors import SpecError
from cosmos_ray.core.spec_rules import check_autoregressive, check_input_path, count_chunks
from cosmos_ray.core.storage import resolve_url

if TYPE_CHECKING:
    from cosmos_ray.core.registry import OfficialModel

__all__ = ["INFERENCE_TYPES", "GenerationSpec", "SpecError"]

DEFAULT_NEGATIVE_PROMPT = (
    "The video captures a series of frames showing ugly scenes, static with no motion, motion blur, "
    "over-saturation, shaky footage, low resolution, grainy texture, pixelated images, poorly lit areas, "
    "underexposed and overexposed scenes, poor color balance, washed out colors, choppy sequences, jerky "
    "movements, low frame rate, artifacting, color banding, unnatural transitions, outdated special effects, "
    "fake elements, unconvincing visuals, poorly edited content, jump cuts, visual noise, and flickering. "
    "Overall, the video is of poor quality."
)

# Latent conditional frames each inference type allows; the first is the official default.
CONDITIONAL_FRAMES = {**{kind: (n,) for kind, n in CONDITIONING_LATENT_FRAMES.items()}, "video2world": (2, 1)}


# The official autoregressive fields: used only when `enable_autoregressive` is on.
AUTOREGRESSIVE_FIELDS = ("enable_autoregressive", "chunk_size", "chunk_overlap")


class GenerationSpec(SpecBase):
    """One video to generate: one sample of the official Cosmos-Predict2.5 inference JSON."""

    # Construct through `from_dict`; direct construction (keywords) is validated too. Both raise `SpecError`.
    REFUSED_FIELDS = {
        field: f"belongs to the official multiview format, which model {MULTIVIEW_MODEL} generates; run it with "
        f"--model {MULTIVIEW_MODEL}"
        for field in MULTIVIEW_ONLY_FIELDS
    }

    inference_type: InferenceType
    name: SampleName
    prompt: Prompt
    input_path: str | None = Field(
        None,
        description="Conditioning image (.png .jpg .jpeg .webp) or video (.mp4): a local path (relative to the "
        "spec file's folder) or a URL with scheme file s3 gs gcs az abfs memory http https. Required for "
        "image2world and video2world, ignored for text2world.",
    )
    negative_prompt: str = Field(
        DEFAULT_NEGATIVE_PROMPT, description="The prompt of the unconditional pass (the official default)."
    )
    seed: Seed = Field(0, description="Seed of the initial noise; autoregressive window k uses seed + k.")
    guidance: Guidance = 7
    resolution: str = Field(
        "none",
        description='"none" for the model\'s trained resolution, or "H,W" with both positive multiples of 16.',
    )
    num_output_frames: int = Field(
        77,
        ge=1,
        description="The video's length in the autoregressive mode (any count). Without that mode a generation "
        "makes the model's native 93 frames whatever it says, as the official script does.",
    )
    num_steps: NumSteps = 35
    fps: int = Field(
        16,
        ge=1,
        le=MAX_FPS,
        description="cosmos-ray: frame rate of the written mp4 (the official CLI always writes 16).",
    )
    num_conditional_frames: int | None = Field(
        None,
        validate_default=True,
        description="cosmos-ray: latent frames kept clean; null for the default of the inference type. "
        "text2world 0, image2world 1, video2world 2 or 1.",
    )
    enable_autoregressive: bool = Field(
        False, description="The official sliding-window mode for videos longer than one window."
    )
    chunk_size: int = Field(
        77,
        description="Autoregressive mode: frames per window, 1 .. the model's window (93); ignored otherwise.",
    )
    chunk_overlap: int = Field(
        1,
        description="Autoregressive mode: frames a window shares with the previous one, 0 .. chunk_size - 1; "
        "ignored otherwise.",
    )
    cosmos_ray_num_frames: int | None = Field(
        None,
        description="cosmos-ray, not official: pixel frames (1 + 4k, e.g. 9 for quick tests) of a single-window "
        "clip instead of the model's native length (null); refused in the autoregressive mode.",
    )
    num_generations: NumGenerations = 1
    cosmos_ray_checkpoint: Checkpoint = None
    cosmos_ray_loras: Loras = None

    # --- one field at a time (types and the ranges in `Field` come first) ---------------------------------

    @field_validator("resolution")
    @classmethod
    def _normalize_resolution(cls, value: str) -> str:
        return normalize_resolution(value)

    @field_validator("cosmos_ray_num_frames")
    @classmethod
    def _one_plus_4k(cls, value: int | None) -> int | None:
        if value is not None and (value < 1 or (value - 1) % 4):
            raise ValueError(f"must be 1 + 4k (1, 5, ..., 93) or null for the model's native length, got {value}")
        return value

    # --- official defaulting: from the fields before (`info.data` holds those that are valid) -------------

    @field_validator("input_path")
    @classmethod
    def _ignored_for_text2world(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if info.data.get("inference_type") == "text2world" else value  # official: optional, ignored

    @field_validator("num_conditional_frames")
    @classmethod
    def _default_by_inference_type(cls, value: int | None, info: ValidationInfo) -> int | None:
        inference_type = info.data.get("inference_type")
        if value is None and inference_type in CONDITIONAL_FRAMES:
            return CONDITIONAL_FRAMES[inference_type][0]
        return value

    @field_validator("chunk_size", "chunk_overlap")
    @classmethod
    def _ignored_without_autoregressive(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("enable_autoregressive"):
            return value
        return cls.model_fields[str(info.field_name)].default  # official: ignored unless the mode is on

    # --- across fields, once every field is valid ---------------------------------------------------------

    @model_validator(mode="after")
    def _check_combinations(self) -> GenerationSpec:
        sample = repr(self.name)
        check_input_path(self.inference_type, self.input_path, sample)
        self.check_seeds()
        if self.enable_autoregressive:
            check_autoregressive(self, sample)
        if self.cosmos_ray_num_frames is not None and self.enable_autoregressive:
            raise SpecError(
                sample,
                "cosmos_ray_num_frames",
                "does not apply in the autoregressive mode, whose video is num_output_frames long (leave it out)",
            )
        allowed = CONDITIONAL_FRAMES[self.inference_type]
        if self.num_conditional_frames not in allowed:
            choices = " or ".join(str(n) for n in sorted(allowed))
            raise SpecError(
                sample,
                "num_conditional_frames",
                f"must be {choices} for {self.inference_type}, got {self.num_conditional_frames}",
            )
        return self

    @classmethod
    def _resolve_inputs(cls, fields: dict[str, Any], base_dir: str | None) -> None:
        input_path = fields.get("input_path")
        if isinstance(input_path, str) and input_path:
            fields["input_path"] = resolve_url(input_path, base_dir)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict (`SpecBase.to_dict`); the autoregressive fields appear only when the
        mode is on."""
        data = super().to_dict()
        for key in ("input_path", "cosmos_ray_num_frames"):
            if data[key] is None:
                del data[key]
        if not self.enable_autoregressive:
            for key in AUTOREGRESSIVE_FIELDS:
                del data[key]
        return data

    def input_urls(self) -> dict[str, str]:
        return {"input_path": self.input_path} if self.input_path is not None else {}

    def encoded_texts(self) -> tuple[str, ...]:
        return (self.prompt, self.negative_prompt)

    def _id_content(self) -> dict[str, Any]:
        content = super()._id_content()
        if self.input_path is not None:
            content["input_path"] = input_digest(self.input_path)
        return content

    def work(self, model: OfficialModel) -> Work:
        """One window of the model's native latent frames (or of `cosmos_ray_num_frames`), or in the autoregressive
        mode one native window per chunk of the official layout; at `resolution` or the model's trained one."""
        frames = {"cosmos_ray_num_frames": self.cosmos_ray_num_frames} if self.cosmos_ray_num_frames else {}
        windows, latent_frames = 1, model.state_t
        if self.enable_autoregressive:  # num_output_frames counts only here
            windows = count_chunks(self.num_output_frames, self.chunk_size, self.chunk_overlap)
            frames = {"num_output_frames": self.num_output_frames}
        elif self.cosmos_ray_num_frames is not None:
            latent_frames = (self.cosmos_ray_num_frames - 1) // TEMPORAL_COMPRESSION + 1
        return Work(
            windows=windows,
            latent_frames=latent_frames,
            height_width=self.height_width or model.trained_resolution,
            frames=frames,
            resolution_field="resolution",
            windows_field="chunk_size",
            fewer_windows="fewer windows (a larger chunk_size, a smaller chunk_overlap or num_output_frames)",
        )

    @property
    def height_width(self) -> tuple[int, int] | None:
        """(H, W) of `resolution`, or None for the model's trained resolution."""
        if self.resolution == "none":
            return None
        height, width = self.resolution.split(",")
        return int(height), int(width)
