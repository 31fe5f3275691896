"""The generation spec: one sample of the official Cosmos-Predict2.5 inference JSON.

`GenerationSpec.from_dict` accepts the official per-sample format
(`{"inference_type": ..., "name": ..., "prompt" | "prompt_path": ..., "input_path": ..., ...}`) with the
official defaults of the latest release, plus three fields of our own: `fps` of the written video,
`num_conditional_frames` and `cosmos_ray_num_frames`. Anything invalid raises `SpecError` naming the sample,
the field and the reason.

A spec means what it means to the official script: without the autoregressive mode a generation makes the
model's native number of frames (93 for the released models) whatever `num_output_frames` says.
`cosmos_ray_num_frames` (not official) asks for another length of such a single-window clip.

`enable_autoregressive` turns on the official sliding-window mode for long videos (`num_output_frames`
frames made of windows of `chunk_size` frames that share `chunk_overlap` frames; see
`cosmos_ray.autoregressive`). The official script ignores `chunk_size` and `chunk_overlap` when the mode is
off, so they are reset to their defaults then and left out of `to_dict` (and of the sample id).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import posixpath
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cosmos_ray import storage
from cosmos_ray.media import INPUT_EXTENSIONS

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

URL_SCHEMES = ("file", "s3", "gs", "gcs", "az", "abfs", "memory", "http", "https")

MAX_GUIDANCE = 7
MAX_FPS = 240

SEED_LIMIT = 2**32  # numpy RandomState seeds are 0 .. 2**32 - 1

# The official autoregressive fields: used only when `enable_autoregressive` is on.
AUTOREGRESSIVE_FIELDS = ("enable_autoregressive", "chunk_size", "chunk_overlap")

# Official run-level settings: valid on the official command line, never inside a sample.
RUN_SETTINGS = (
    "output_dir",
    "model",
    "checkpoint_path",
    "experiment",
    "config_file",
    "context_parallel_size",
    "offload_diffusion_model",
    "offload_tokenizer",
    "offload_text_encoder",
    "disable_guardrails",
    "offload_guardrail_models",
    "keep_going",
    "profile",
)

# Fields of the official multiview inference format.
MULTIVIEW_FIELDS = (
    "n_views",
    "num_input_frames",
    "control_weight",
    "stack_mode",
    "front_wide",
    "rear",
    "rear_left",
    "rear_right",
    "cross_left",
    "cross_right",
    "front_tele",
)


class SpecError(ValueError):
    """A spec that cannot be used, with the sample, field and reason in the message."""

    def __init__(self, sample: str, field: str, reason: str):
        self.sample = sample
        self.field = field
        self.reason = reason
        where = f"field '{field}' " if field else ""
        super().__init__(f"sample {sample}: {where}{reason}")

    def __reduce__(self) -> tuple[type[SpecError], tuple[str, str, str]]:
        # pickles with its fields, so it crosses process boundaries (e.g. from a Ray worker)
        return SpecError, (self.sample, self.field, self.reason)


@dataclass(frozen=True)
class GenerationSpec:
    """One video to generate. Construct through `from_dict`; direct construction is validated too."""

    inference_type: str
    name: str
    prompt: str
    input_path: str | None = None  # fsspec URL or absolute local path; required for image/video2world
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    seed: int = 0
    guidance: int = 7  # 0..7; 0 skips the unconditional pass
    resolution: str = "none"  # "none" (model's trained resolution) or "H,W"
    num_output_frames: int = 77  # 1 + 4k; the video's length in autoregressive mode (any count >= 1), else unused
    num_steps: int = 35
    fps: int = 16
    num_conditional_frames: int | None = None  # latent frames kept clean; None -> by inference_type
    enable_autoregressive: bool = False  # official sliding-window mode for videos longer than one window
    chunk_size: int = 77  # frames per window (autoregressive mode)
    chunk_overlap: int = 1  # frames a window shares with the previous one (autoregressive mode)
    cosmos_ray_num_frames: int | None = None  # pixel frames (1 + 4k) instead of the model's native length

    def __post_init__(self) -> None:
        sample = repr(self.name)
        _check_types(self, sample)
        if self.inference_type not in INFERENCE_TYPES:
            raise SpecError(
                sample, "inference_type", f"must be one of {', '.join(INFERENCE_TYPES)}, got {self.inference_type!r}"
            )
        if self.inference_type == "text2world":
            object.__setattr__(self, "input_path", None)  # official: optional and ignored for text2world
        if self.num_conditional_frames is None:
            object.__setattr__(self, "num_conditional_frames", CONDITIONAL_FRAMES[self.inference_type][0])
        if not self.enable_autoregressive:  # official: ignored unless the mode is on
            object.__setattr__(self, "chunk_size", GenerationSpec.chunk_size)
            object.__setattr__(self, "chunk_overlap", GenerationSpec.chunk_overlap)
        object.__setattr__(self, "resolution", _normalize_resolution(self.resolution, sample))
        _check_values(self, sample)

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        source: str = "",
        base_dir: str | None = None,
        storage_options: dict | None = None,
    ) -> GenerationSpec:
        """Parse one official inference JSON object.

        `source` names where it came from (e.g. "specs.jsonl:3") for error messages. Relative `input_path`
        and `prompt_path` are resolved against `base_dir` (the spec file's folder; default: working
        directory); `prompt_path` is read through fsspec with `storage_options` and stripped.
        """
        sample = _sample_label(data, source)
        if not isinstance(data, dict):
            raise SpecError(sample, "", f"is not a JSON object but {type(data).__name__}")
        fields = _known_fields(data, sample)
        if "prompt" not in fields and "prompt_path" in fields:
            fields["prompt"] = _read_prompt(fields["prompt_path"], sample, base_dir, storage_options)
        fields.pop("prompt_path", None)
        for required in ("inference_type", "name", "prompt"):
            if required not in fields:
                hint = " (or 'prompt_path')" if required == "prompt" else ""
                raise SpecError(sample, required, f"is required{hint}")
        input_path = fields.get("input_path")
        if isinstance(input_path, str) and input_path:
            fields["input_path"] = storage.resolve_url(input_path, base_dir)
        try:
            return cls(**fields)
        except SpecError as error:
            raise SpecError(sample, error.field, error.reason) from None

    def to_dict(self) -> dict:
        """All fields as a JSON-ready dict; `from_dict(spec.to_dict()) == spec`.

        The autoregressive fields appear only when the mode is on, so the sample ids of single-window
        specs do not depend on them.
        """
        data = dataclasses.asdict(self)
        if data["input_path"] is None:
            del data["input_path"]
        if data["cosmos_ray_num_frames"] is None:
            del data["cosmos_ray_num_frames"]
        if not self.enable_autoregressive:
            for key in AUTOREGRESSIVE_FIELDS:
                del data[key]
        return data

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) of `to_dict()`; the form stored in manifests and records."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @property
    def sample_id(self) -> str:
        """ "{safe name}-{12 hex}": the hash covers every field that changes the output (all but `name`)."""
        content = self.to_dict()
        del content["name"]
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


_TYPES: dict[str, tuple[type, ...]] = {
    "inference_type": (str,),
    "name": (str,),
    "prompt": (str,),
    "input_path": (str, type(None)),
    "negative_prompt": (str,),
    "seed": (int,),
    "guidance": (int,),
    "resolution": (str,),
    "num_output_frames": (int,),
    "num_steps": (int,),
    "fps": (int,),
    "num_conditional_frames": (int, type(None)),
    "enable_autoregressive": (bool,),
    "chunk_size": (int,),
    "chunk_overlap": (int,),
    "cosmos_ray_num_frames": (int, type(None)),
}

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", type(None): "null"}


def _check_types(spec: GenerationSpec, sample: str) -> None:
    for field, allowed in _TYPES.items():
        value = getattr(spec, field)
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            expected = " or ".join(_TYPE_NAMES[t] for t in allowed)
            raise SpecError(sample, field, f"must be {expected}, got {type(value).__name__} {value!r}")


def _check_values(spec: GenerationSpec, sample: str) -> None:
    if not spec.name.strip():
        raise SpecError(sample, "name", "must not be empty")
    _check_input_path(spec, sample)
    if spec.seed < 0 or spec.seed >= SEED_LIMIT:
        raise SpecError(sample, "seed", f"must be in 0..{SEED_LIMIT - 1} (a numpy RandomState seed), got {spec.seed}")
    if not 0 <= spec.guidance <= MAX_GUIDANCE:
        raise SpecError(sample, "guidance", f"must be in 0..{MAX_GUIDANCE}, got {spec.guidance}")
    if spec.enable_autoregressive:
        _check_autoregressive(spec, sample)
    elif spec.num_output_frames < 1 or (spec.num_output_frames - 1) % 4:
        raise SpecError(
            sample, "num_output_frames", f"must be 1 + 4k (1, 5, ..., 77, 93), got {spec.num_output_frames}"
        )
    if spec.cosmos_ray_num_frames is not None and spec.enable_autoregressive:
        raise SpecError(
            sample,
            "cosmos_ray_num_frames",
            "does not apply in the autoregressive mode, whose video is num_output_frames long (leave it out)",
        )
    if spec.cosmos_ray_num_frames is not None and (
        spec.cosmos_ray_num_frames < 1 or (spec.cosmos_ray_num_frames - 1) % 4
    ):
        raise SpecError(
            sample,
            "cosmos_ray_num_frames",
            f"must be 1 + 4k (1, 5, ..., 93) or null for the model's native length, got {spec.cosmos_ray_num_frames}",
        )
    if spec.num_steps < 1:
        raise SpecError(sample, "num_steps", f"must be at least 1, got {spec.num_steps}")
    if not 1 <= spec.fps <= MAX_FPS:
        raise SpecError(sample, "fps", f"must be in 1..{MAX_FPS}, got {spec.fps}")
    allowed = CONDITIONAL_FRAMES[spec.inference_type]
    if spec.num_conditional_frames not in allowed:
        choices = " or ".join(str(n) for n in sorted(allowed))
        raise SpecError(
            sample,
            "num_conditional_frames",
            f"must be {choices} for {spec.inference_type}, got {spec.num_conditional_frames}",
        )


def _check_autoregressive(spec: GenerationSpec, sample: str) -> None:
    """The official mode's fields, as far as they do not depend on the model (the window length does)."""
    if spec.num_output_frames < 1:
        raise SpecError(sample, "num_output_frames", f"must be at least 1, got {spec.num_output_frames}")
    if spec.chunk_size < 1:
        raise SpecError(sample, "chunk_size", f"must be at least 1, got {spec.chunk_size}")
    if not 0 <= spec.chunk_overlap < spec.chunk_size:
        raise SpecError(
            sample,
            "chunk_overlap",
            f"must be in 0..{spec.chunk_size - 1} (less than chunk_size {spec.chunk_size}), got {spec.chunk_overlap}",
        )
    num_chunks = count_chunks(spec.num_output_frames, spec.chunk_size, spec.chunk_overlap)
    if spec.seed + num_chunks > SEED_LIMIT:
        raise SpecError(
            sample,
            "seed",
            f"must leave one seed per chunk (chunk k uses seed + k): {num_chunks} chunks need a seed of at most "
            f"{SEED_LIMIT - num_chunks}, got {spec.seed}",
        )


def count_chunks(num_output_frames: int, chunk_size: int, chunk_overlap: int) -> int:
    """Windows of the official sliding-window layout: the first covers `chunk_size` frames, each next one
    `chunk_size - chunk_overlap` new frames, until `num_output_frames` are covered."""
    remaining = num_output_frames - chunk_size
    return 1 if remaining <= 0 else 1 + math.ceil(remaining / (chunk_size - chunk_overlap))


def _check_input_path(spec: GenerationSpec, sample: str) -> None:
    if spec.inference_type == "text2world":
        return
    if not spec.input_path:
        raise SpecError(sample, "input_path", f"is required for {spec.inference_type}")
    scheme = storage.url_scheme(spec.input_path)
    if scheme is not None and scheme not in URL_SCHEMES:
        raise SpecError(
            sample,
            "input_path",
            f"has URL scheme '{scheme}://', which is not supported "
            f"(use a local path or one of {', '.join(URL_SCHEMES)})",
        )
    path = urlsplit(spec.input_path).path if scheme in ("http", "https") else spec.input_path  # drop ?query
    extension = posixpath.splitext(path)[1].lower()
    if extension not in INPUT_EXTENSIONS:
        raise SpecError(
            sample,
            "input_path",
            f"has extension {extension or '(none)'!r}, which is not an image or "
            f"video (one of {', '.join(INPUT_EXTENSIONS)})",
        )


def _normalize_resolution(resolution: str, sample: str) -> str:
    """ "none", or "H,W" with both multiples of 16 (spaces around the numbers are dropped)."""
    if resolution == "none":
        return resolution
    match = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", resolution)
    if match is None:
        raise SpecError(sample, "resolution", f'must be "none" or "H,W" (e.g. "704,1280"), got {resolution!r}')
    height, width = int(match.group(1)), int(match.group(2))
    if height < 16 or width < 16 or height % 16 or width % 16:
        raise SpecError(
            sample, "resolution", f"must have a height and width that are positive multiples of 16, got {resolution!r}"
        )
    return f"{height},{width}"


def _known_fields(data: dict, sample: str) -> dict:
    """Copy of `data`; raise for every field that is not a sample field cosmos-ray knows."""
    known = {f.name for f in dataclasses.fields(GenerationSpec)} | {"prompt_path"}
    fields = {}
    for key, value in data.items():
        if key in RUN_SETTINGS:
            raise SpecError(
                sample,
                key,
                "is a run setting of the official CLI, not a sample field; pass it to the cosmos-ray job instead",
            )
        elif key in MULTIVIEW_FIELDS:
            raise SpecError(sample, key, "belongs to the official multiview format, which cosmos-ray does not support")
        elif key == "samples":
            raise SpecError(
                sample,
                key,
                "belongs to the older official multi-sample file format; "
                "cosmos_ray.manifest.load_specs expands such files",
            )
        elif key not in known:
            raise SpecError(sample, key, f"is not a known field (known: {', '.join(sorted(known))})")
        else:
            fields[key] = value
    return fields


def _read_prompt(prompt_path: Any, sample: str, base_dir: str | None, storage_options: dict | None) -> str:
    if not isinstance(prompt_path, str) or not prompt_path:
        raise SpecError(sample, "prompt_path", f"must be a non-empty string, got {prompt_path!r}")
    url = storage.resolve_url(prompt_path, base_dir)
    try:
        return storage.read_text(url, storage_options).strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.reason if isinstance(error, storage.StorageError) else error  # it names the URL already
        raise SpecError(sample, "prompt_path", f"cannot be read from {url}: {reason}") from None


def _sample_label(data: Any, source: str) -> str:
    name = data.get("name") if isinstance(data, dict) else None
    if isinstance(name, str) and name:
        return f"{name!r} ({source})" if source else repr(name)
    return source or "(unnamed)"
