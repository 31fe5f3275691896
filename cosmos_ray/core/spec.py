"""The generation spec: one sample of the official Cosmos-Predict2.5 inference JSON.

`GenerationSpec` is a pydantic model, as the official inference arguments are: the one definition that the
manifest maker, the batch job and Serve's request body share. Its JSON Schema is docs/spec.schema.json
(`cosmos_ray.core.spec_schema`, printed by `python -m jobs.spec_schema`) and Serve's OpenAPI page shows it.

`GenerationSpec.from_dict` accepts the official per-sample format
(`{"inference_type": ..., "name": ..., "prompt" | "prompt_path": ..., "input_path": ..., ...}`) with the
official defaults of the latest release, plus fields of our own: `fps` of the written video,
`num_conditional_frames`, `cosmos_ray_num_frames`, `num_generations`, and the weights that make the video,
`cosmos_ray_checkpoint` and `cosmos_ray_loras`. Anything invalid raises `SpecError` naming the sample, the
field and the reason.

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

import hashlib
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from cosmos_ray.core.adapters import LoraRef, resolve_entry
from cosmos_ray.core.spec_errors import SpecError, sample_label, spec_error
from cosmos_ray.core.spec_rules import (
    SEED_LIMIT,
    check_autoregressive,
    check_input_path,
    last_seed,
    read_prompt,
)
from cosmos_ray.core.storage import Storage, is_local, local_file_digest, resolve_url

DEFAULT_NEGATIVE_PROMPT = (
    "The video captures a series of frames showing ugly scenes, static with no motion, motion blur, "
    "over-saturation, shaky footage, low resolution, grainy texture, pixelated images, poorly lit areas, "
    "underexposed and overexposed scenes, poor color balance, washed out colors, choppy sequences, jerky "
    "movements, low frame rate, artifacting, color banding, unnatural transitions, outdated special effects, "
    "fake elements, unconvincing visuals, poorly edited content, jump cuts, visual noise, and flickering. "
    "Overall, the video is of poor quality."
)

INFERENCE_TYPES = ("text2world", "image2world", "video2world")

# Latent conditional frames each inference type allows; the first is the official default.
CONDITIONAL_FRAMES = {"text2world": (0,), "image2world": (1,), "video2world": (2, 1)}

MAX_GUIDANCE = 7
MAX_FPS = 240


# The official autoregressive fields: used only when `enable_autoregressive` is on.
AUTOREGRESSIVE_FIELDS = ("enable_autoregressive", "chunk_size", "chunk_overlap")


class GenerationSpec(BaseModel):
    """One video to generate: one sample of the official Cosmos-Predict2.5 inference JSON."""

    # Construct through `from_dict`; direct construction (keywords) is validated too. Both raise `SpecError`.
    # strict: no coercion, as the hand-written checks had it ("1", 1.0 and True are not integers).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    inference_type: str = Field(
        description="What conditions the video: the prompt alone, an image, or the first frames of a video.",
        json_schema_extra={"enum": list(INFERENCE_TYPES)},
    )
    name: str = Field(
        description="Names the sample (its outputs and sample id start with it); non-empty, and unique across "
        "the files of one manifest, as in the official CLI.",
    )
    prompt: str = Field(description="The text prompt.")
    input_path: str | None = Field(
        None,
        description="Conditioning image (.png .jpg .jpeg .webp) or video (.mp4): a local path (relative to the "
        "spec file's folder) or a URL with scheme file s3 gs gcs az abfs memory http https. Required for "
        "image2world and video2world, ignored for text2world.",
    )
    negative_prompt: str = Field(
        DEFAULT_NEGATIVE_PROMPT, description="The prompt of the unconditional pass (the official default)."
    )
    seed: int = Field(
        0, ge=0, le=SEED_LIMIT - 1, description="Seed of the initial noise; autoregressive window k uses seed + k."
    )
    guidance: int = Field(
        7, ge=0, le=MAX_GUIDANCE, description="Classifier-free guidance scale; 0 skips the unconditional pass."
    )
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
    num_steps: int = Field(35, ge=1, description="Denoising steps.")
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
    num_generations: int = Field(1, ge=1, description="cosmos-ray: videos of this spec; generation k uses seed + k.")
    cosmos_ray_checkpoint: str | None = Field(
        None,
        description="cosmos-ray: the post-trained DiT checkpoint that makes this video; the job fills it in from "
        "its --checkpoint-path, and a sample that names another checkpoint than its job's is refused. null: the "
        "stock weights.",
    )
    cosmos_ray_loras: tuple[LoraRef, ...] | None = Field(
        None,
        description='cosmos-ray: the LoRA adapters blended into the DiT for this video, each {"path": file or URL '
        '(in Serve: a name the deployment allows), "scale": strength, default 1}; null for the job\'s adapters '
        "(--lora), [] for none.",
    )

    if not TYPE_CHECKING:  # at run time only: mypy keeps the pydantic plugin's typed keyword signature

        def __init__(self, **fields: Any) -> None:
            try:
                super().__init__(**fields)
            except ValidationError as error:
                raise spec_error(error, repr(fields.get("name")), GenerationSpec.model_fields) from None

    # --- one field at a time (types and the ranges in `Field` come first) ---------------------------------

    @field_validator("inference_type")
    @classmethod
    def _known_inference_type(cls, value: str) -> str:
        if value not in INFERENCE_TYPES:
            raise ValueError(f"must be one of {', '.join(INFERENCE_TYPES)}, got {value!r}")
        return value

    @field_validator("name")
    @classmethod
    def _name_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("resolution")
    @classmethod
    def _normalize_resolution(cls, value: str) -> str:
        """ "none", or "H,W" with both multiples of 16 (spaces around the numbers are dropped)."""
        if value == "none":
            return value
        match = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", value)
        if match is None:
            raise ValueError(f'must be "none" or "H,W" (e.g. "704,1280"), got {value!r}')
        height, width = int(match.group(1)), int(match.group(2))
        if height < 16 or width < 16 or height % 16 or width % 16:
            raise ValueError(f"must have a height and width that are positive multiples of 16, got {value!r}")
        return f"{height},{width}"

    @field_validator("cosmos_ray_num_frames")
    @classmethod
    def _one_plus_4k(cls, value: int | None) -> int | None:
        if value is not None and (value < 1 or (value - 1) % 4):
            raise ValueError(f"must be 1 + 4k (1, 5, ..., 93) or null for the model's native length, got {value}")
        return value

    @field_validator("cosmos_ray_checkpoint")
    @classmethod
    def _checkpoint_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a checkpoint path or URL, or null for the stock weights")
        return value

    @field_validator("cosmos_ray_loras", mode="before")
    @classmethod
    def _adapter_list(cls, value: Any) -> tuple[LoraRef, ...] | None:
        """A JSON list of {"path", "scale"} objects (or `LoraRef`s) -> `LoraRef`s, each path once."""
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise ValueError(f'must be a list of {{"path": ..., "scale": ...}} objects or null, got {value!r}')
        adapters = tuple(LoraRef.from_entry(entry, index) for index, entry in enumerate(value))
        paths = [adapter.path for adapter in adapters]
        repeated = next((path for path in paths if paths.count(path) > 1), None)
        if repeated is not None:
            raise ValueError(f"names adapter {repeated!r} twice; give it once, with the sum of its scales")
        return adapters

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
        if last_seed(self) >= SEED_LIMIT:
            raise SpecError(
                sample,
                "num_generations",
                f"needs seeds {self.seed}..{last_seed(self)} (one per generation), beyond the largest seed "
                f"{SEED_LIMIT - 1}; lower seed or num_generations",
            )
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
    def from_dict(
        cls,
        data: Any,
        *,
        source: str = "",
        base_dir: str | None = None,
        storage: Storage = Storage(),
    ) -> GenerationSpec:
        """Parse one official inference JSON object.

        `source` names where it came from (e.g. "specs.jsonl:3") for error messages. Relative `input_path`,
        adapter paths (`cosmos_ray_loras`) and `prompt_path` are resolved against `base_dir` (the spec file's
        folder; default: working directory); `prompt_path` is read through `storage` and stripped.
        """
        sample = sample_label(data, source)
        if not isinstance(data, dict):
            raise SpecError(sample, "", f"is not a JSON object but {type(data).__name__}")
        fields = dict(data)
        prompt_path = fields.pop("prompt_path", None)
        if "prompt" not in fields and "prompt_path" in data:  # official: `prompt` wins
            fields["prompt"] = read_prompt(prompt_path, sample, base_dir, storage)
        input_path = fields.get("input_path")
        if isinstance(input_path, str) and input_path:
            fields["input_path"] = resolve_url(input_path, base_dir)
        if isinstance(fields.get("cosmos_ray_loras"), list):
            fields["cosmos_ray_loras"] = [resolve_entry(entry, base_dir) for entry in fields["cosmos_ray_loras"]]
        try:
            return cls.model_validate(fields)
        except ValidationError as error:
            raise spec_error(error, sample, cls.model_fields) from None

    def to_dict(self) -> dict:
        """All fields as a JSON-ready dict; `from_dict(spec.to_dict()) == spec`.

        The autoregressive fields appear only when the mode is on, `num_generations` only when it is not 1, and
        the checkpoint and adapters only when set, so the sample ids of specs that do not use them do not
        depend on them.
        """
        data = self.model_dump()
        if data["input_path"] is None:
            del data["input_path"]
        for key in ("cosmos_ray_num_frames", "cosmos_ray_checkpoint", "cosmos_ray_loras"):
            if data[key] is None:
                del data[key]
        if self.cosmos_ray_loras is not None:
            data["cosmos_ray_loras"] = [adapter.to_dict() for adapter in self.cosmos_ray_loras]
        if not self.enable_autoregressive:
            for key in AUTOREGRESSIVE_FIELDS:
                del data[key]
        if self.num_generations == 1:
            del data["num_generations"]
        return data

    def generations(self) -> list[GenerationSpec]:
        """One spec per video this spec asks for: generation k is this spec with seed `seed + k` and
        `num_generations` 1. Its sample id is that of a spec written with that seed, so generations are
        resumed one by one, and raising `num_generations` later keeps the videos already made."""
        # valid without re-validation: the seeds were checked up to the last generation's
        return [
            self.model_copy(update={"seed": self.seed + k, "num_generations": 1}) for k in range(self.num_generations)
        ]

    def for_weights(self, checkpoint: str | None, loras: Sequence[LoraRef] = ()) -> GenerationSpec:
        """This spec as a run with DiT checkpoint `checkpoint` (None: the stock weights) and default adapters
        `loras` generates it: what every entry point does to a spec before it takes its sample id.

        The spec's own adapters win over `loras`; without adapters of its own it gets `loras` (an empty list of
        its own stays, where it differs from the run's default). A spec that names another checkpoint than the
        run's raises `SpecError`: one run loads one checkpoint. Applying it twice changes nothing.
        """
        if self.cosmos_ray_checkpoint is not None and self.cosmos_ray_checkpoint != checkpoint:
            run_weights = f"checkpoint {checkpoint!r}" if checkpoint else "the stock weights (no --checkpoint-path)"
            raise SpecError(
                repr(self.name),
                "cosmos_ray_checkpoint",
                f"names checkpoint {self.cosmos_ray_checkpoint!r}, but this job generates with {run_weights}; "
                f"run this sample in a job with --checkpoint-path {self.cosmos_ray_checkpoint}, or leave the field "
                "out",
            )
        adapters = self.cosmos_ray_loras if self.cosmos_ray_loras is not None else tuple(loras)
        # No adapters: None (out of the sample id), unless the spec's own [] overrides default adapters.
        resolved = adapters if adapters or loras else None
        return self.model_copy(update={"cosmos_ray_checkpoint": checkpoint, "cosmos_ray_loras": resolved})

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) of `to_dict()`; the form stored in manifests and records."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @property
    def sample_id(self) -> str:
        """ "{safe name}-{12 hex}": the hash covers every field that changes the output (all but `name`). A local
        `input_path` counts by the file's content, not its path, so that the same specs in another checkout or
        folder keep their ids (an unreadable file counts by its path); a URL counts as written."""
        content = self.to_dict()
        del content["name"]
        if self.input_path is not None and is_local(self.input_path):
            content["input_path"] = local_file_digest(self.input_path) or self.input_path
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
        return f"{safe_name(self.name)}-{digest}"

    @property
    def height_width(self) -> tuple[int, int] | None:
        """(H, W) of `resolution`, or None for the model's trained resolution."""
        if self.resolution == "none":
            return None
        height, width = self.resolution.split(",")
        return int(height), int(width)


def safe_name(name: str, max_length: int = 64) -> str:
    """`name` reduced to characters safe in any file system or object key."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:max_length]
    return cleaned or "sample"
