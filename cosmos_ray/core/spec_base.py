"""What every spec format shares: the fields both official formats have (as annotated types, so each format
keeps its own field order, defaults and wording), and `SpecBase`, the behaviour of a spec that does not depend on
its format: parsing a JSON object into it with errors that name the sample and the field, the expansion of
`num_generations`, the run's weights folded in, and the sample id.

The formats are `cosmos_ray.core.spec.GenerationSpec` (the base models) and
`cosmos_ray.core.multiview_spec.MultiviewSpec` (the 7-camera driving model); `cosmos_ray.core.spec_formats`
picks one by model.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from cosmos_ray.core.adapters import LoraRef, resolve_entry
from cosmos_ray.core.spec_errors import SpecError, sample_label, spec_error
from cosmos_ray.core.spec_rules import SEED_LIMIT, read_prompt
from cosmos_ray.core.storage import Storage, is_local, local_file_digest

if TYPE_CHECKING:
    from cosmos_ray.core.registry import OfficialModel

INFERENCE_TYPES = ("text2world", "image2world", "video2world")

# Latent frames of the input that each inference type keeps clean, as the official `num_input_frames` of both
# formats (cosmos_predict2/config.py and multiview_config.py at 7e5ffc83) sets them.
CONDITIONING_LATENT_FRAMES = {"text2world": 0, "image2world": 1, "video2world": 2}

TEMPORAL_COMPRESSION = 4  # pixel frames 1 + 4 (t - 1) are t latent frames (the Wan VAE)
MAX_GUIDANCE = 7
MAX_FPS = 240


def _known_inference_type(value: str) -> str:
    if value not in INFERENCE_TYPES:
        raise ValueError(f"must be one of {', '.join(INFERENCE_TYPES)}, got {value!r}")
    return value


def _not_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _checkpoint_not_empty(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must be a checkpoint path or URL, or null for the stock weights")
    return value


def _adapter_list(value: Any) -> tuple[LoraRef, ...] | None:
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


@dataclass(frozen=True)
class Work:
    """What one video of a spec asks the DiT for, in its format's terms (`SpecBase.work`): what the operator's
    limits bound for every format (`cosmos_ray.core.limits.SpecLimits`)."""

    windows: int  # windows (autoregressive windows, chunks) sampled one after another; 1: one window
    latent_frames: int  # latent frames of one view in one window
    height_width: tuple[int, int]  # (H, W) pixels of one view
    views: int = 1  # views sampled as one sequence (their tokens attend to each other)
    # video frames (of one view) by the field that asks for them: what `max_num_output_frames` bounds
    frames: Mapping[str, int] = field(default_factory=dict)
    resolution_field: str | None = None  # the field that sets `height_width` (`max_pixels` bounds it); None: fixed
    windows_field: str = ""  # the field to name when the windows make the work too large
    fewer_windows: str = ""  # how to ask for fewer windows, in the format's words ("" for one window)


# --- the fields both formats have (each format assigns the default and may add its own description) ---------

InferenceType = Annotated[
    str,
    Field(
        description="What conditions the video: the prompt alone, an image, or the first frames of a video.",
        json_schema_extra={"enum": list(INFERENCE_TYPES)},
    ),
    AfterValidator(_known_inference_type),
]
SampleName = Annotated[
    str,
    Field(
        description="Names the sample (its outputs and sample id start with it); non-empty, and unique across "
        "the files of one manifest, as in the official CLI."
    ),
    AfterValidator(_not_empty),
]
Prompt = Annotated[str, Field(description="The text prompt.")]
Seed = Annotated[int, Field(ge=0, le=SEED_LIMIT - 1)]
Guidance = Annotated[
    int,
    Field(ge=0, le=MAX_GUIDANCE, description="Classifier-free guidance scale; 0 skips the unconditional pass."),
]
NumSteps = Annotated[int, Field(ge=1, description="Denoising steps.")]
Fps = Annotated[int, Field(ge=1, le=MAX_FPS)]
NumGenerations = Annotated[int, Field(ge=1, description="cosmos-ray: videos of this spec; generation k uses seed + k.")]
Checkpoint = Annotated[
    str | None,
    Field(
        description="cosmos-ray: the post-trained DiT checkpoint that makes this video; the job fills it in from "
        "its --checkpoint-path, and a sample that names another checkpoint than its job's is refused. null: the "
        "stock weights."
    ),
    AfterValidator(_checkpoint_not_empty),
]
Loras = Annotated[
    tuple[LoraRef, ...] | None,
    Field(
        description='cosmos-ray: the LoRA adapters blended into the DiT for this video, each {"path": file or URL '
        '(in Serve: a name the deployment allows), "scale": strength, default 1}; null for the job\'s adapters '
        "(--lora), [] for none."
    ),
    BeforeValidator(_adapter_list),
]


class SpecBase(BaseModel):
    """The behaviour every spec format shares; each subclass declares its fields (with the types above)."""

    # strict: no coercion, as the hand-written checks had it ("1", 1.0 and True are not integers).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # Fields of other official formats, with the reason this format refuses them (see `spec_error`).
    REFUSED_FIELDS: ClassVar[Mapping[str, str]] = {}

    if TYPE_CHECKING:  # declared by every subclass, in its own order; named here for the shared methods
        name: str
        inference_type: str
        prompt: str
        seed: int

        @property
        def fps(self) -> int:
            """Frames per second of the video (a field of most formats, derived in others)."""
            ...

        num_generations: int
        cosmos_ray_checkpoint: str | None
        cosmos_ray_loras: tuple[LoraRef, ...] | None
    else:  # at run time only: mypy keeps the pydantic plugin's typed keyword signature

        def __init__(self, **fields: Any) -> None:
            try:
                super().__init__(**fields)
            except ValidationError as error:
                raise spec_error(error, repr(fields.get("name")), type(self)) from None

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        source: str = "",
        base_dir: str | None = None,
        storage: Storage = Storage(),
    ) -> Self:
        """Parse one official inference JSON object.

        `source` names where it came from (e.g. "specs.jsonl:3") for error messages. Relative input paths,
        adapter paths (`cosmos_ray_loras`) and `prompt_path` are resolved against `base_dir` (the spec file's
        folder; default: working directory); `prompt_path` is read through `storage` and stripped.
        """
        sample = sample_label(data, source)
        if not isinstance(data, dict):
            raise SpecError(sample, "", f"is not a JSON object but {type(data).__name__}")
        fields = cls._official_fields(data, sample)
        prompt_path = fields.pop("prompt_path", None)
        if "prompt" not in fields and "prompt_path" in data:  # official: `prompt` wins
            fields["prompt"] = read_prompt(prompt_path, sample, base_dir, storage)
        if isinstance(fields.get("cosmos_ray_loras"), list):
            fields["cosmos_ray_loras"] = [resolve_entry(entry, base_dir) for entry in fields["cosmos_ray_loras"]]
        cls._resolve_inputs(fields, base_dir)
        try:
            return cls.model_validate(fields)
        except ValidationError as error:
            raise spec_error(error, sample, cls) from None

    @classmethod
    def _official_fields(cls, data: dict[str, Any], sample: str) -> dict[str, Any]:
        """The fields of `data` in this format's current form (a format that had older forms converts them)."""
        return dict(data)

    @classmethod
    def _resolve_inputs(cls, fields: dict[str, Any], base_dir: str | None) -> None:
        """Resolve the input paths among `fields` against `base_dir`, in place."""

    def input_urls(self) -> dict[str, str]:
        """The spec's input files by the dotted path of their field in the JSON (`input_path`,
        `front_wide.video_path`, ...): what the manifest maker checks exists and Serve checks against its
        allowed prefixes. A format without inputs has none."""
        return {}

    def work(self, model: OfficialModel) -> Work:
        """What one video of this spec asks of `model`'s DiT: its windows, the latent frames, views and picture of
        each, and the fields that set them (for the limits' errors)."""
        raise NotImplementedError(f"{type(self).__name__} does not say what work it asks for")

    @classmethod
    def expand_official(
        cls, data: Any, *, source: str, base_dir: str | None, storage: Storage
    ) -> list[tuple[Any, str]]:
        """The spec objects (each with its source) that one official spec object stands for, before parsing:
        itself, unless the format's official file describes several samples (the action-conditioned folder of
        episodes). Raises `SpecError` naming the spec file and the field when it cannot be expanded."""
        return [(data, source)]

    def check_input_files(self, storage: Storage) -> None:
        """Read and check the spec's small input files (an annotation, camera files; never a video or an image),
        so that the manifest maker and the batch job's check stage refuse them before a GPU is spent. Raises
        `SpecError` or `MediaError` naming the sample, the file and what is wrong. A format without such files
        has nothing to check."""

    def encoded_texts(self) -> tuple[str, ...]:
        """The texts the engine embeds for this spec, the prompt first: the batch job orders samples by them,
        so a GPU group meets a text again while its embedding is cached."""
        return (self.prompt,)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict; `from_dict(spec.to_dict()) == spec`. `num_generations` appears only
        when it is not 1, the checkpoint and adapters only when set, so the sample ids of specs that do not use
        them do not depend on them."""
        data = self.model_dump()
        for key in ("cosmos_ray_checkpoint", "cosmos_ray_loras"):
            if data[key] is None:
                del data[key]
        if self.cosmos_ray_loras is not None:
            data["cosmos_ray_loras"] = [adapter.to_dict() for adapter in self.cosmos_ray_loras]
        if self.num_generations == 1:
            del data["num_generations"]
        return data

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) of `to_dict()`; the form stored in manifests and records."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    def check_seeds(self) -> None:
        """SpecError unless every generation's seed is a valid seed."""
        if self.last_seed >= SEED_LIMIT:
            raise SpecError(
                repr(self.name),
                "num_generations",
                f"needs seeds {self.seed}..{self.last_seed} (one per generation), beyond the largest seed "
                f"{SEED_LIMIT - 1}; lower seed or num_generations",
            )

    @property
    def last_seed(self) -> int:
        """The seed of the spec's last generation."""
        return self.seed + self.num_generations - 1

    def generations(self) -> list[Self]:
        """One spec per video this spec asks for: generation k is this spec with seed `seed + k` and
        `num_generations` 1. Its sample id is that of a spec written with that seed, so generations are
        resumed one by one, and raising `num_generations` later keeps the videos already made."""
        # valid without re-validation: the seeds were checked up to the last generation's
        return [
            self.model_copy(update={"seed": self.seed + k, "num_generations": 1}) for k in range(self.num_generations)
        ]

    def for_weights(self, checkpoint: str | None, loras: Sequence[LoraRef] = ()) -> Self:
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

    def _id_content(self) -> dict[str, Any]:
        """What the sample id hashes: `to_dict()` without `name`; a format with local input files replaces
        their paths by `input_digest`s."""
        content = self.to_dict()
        del content["name"]
        return content

    @property
    def sample_id(self) -> str:
        """ "{safe name}-{12 hex}": the hash covers every field that changes the output (all but `name`). A local
        input counts by the file's content, not its path, so that the same specs in another checkout or folder
        keep their ids (an unreadable file counts by its path); a URL counts as written."""
        canonical = json.dumps(self._id_content(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
        return f"{safe_name(self.name)}-{digest}"


def normalize_resolution(value: str) -> str:
    """A `resolution` field: "none", or "H,W" with both multiples of 16 (spaces around the numbers are dropped)."""
    if value == "none":
        return value
    match = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", value)
    if match is None:
        raise ValueError(f'must be "none" or "H,W" (e.g. "704,1280"), got {value!r}')
    height, width = int(match.group(1)), int(match.group(2))
    if height < 16 or width < 16 or height % 16 or width % 16:
        raise ValueError(f"must have a height and width that are positive multiples of 16, got {value!r}")
    return f"{height},{width}"


def input_digest(path: str) -> str:
    """How an input path enters a sample id: a local file by the SHA-256 of its bytes (by its path when it
    cannot be read), a URL as written."""
    return (local_file_digest(path) or path) if is_local(path) else path


def safe_name(name: str, max_length: int = 64) -> str:
    """`name` reduced to characters safe in any file system or object key."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:max_length]
    return cleaned or "sample"
