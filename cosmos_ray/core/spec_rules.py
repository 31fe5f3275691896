"""The rules of a spec that take more than one field, or a file: its inputs (`input_path`'s scheme and
extension, `prompt_path` read and stripped) and the autoregressive mode's windows and seeds. Used by
`cosmos_ray.core.spec.GenerationSpec` and `cosmos_ray.core.multiview_spec.MultiviewSpec` when they validate."""

from __future__ import annotations

import math
import posixpath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cosmos_ray.core.media import IMAGE_EXTENSIONS, INPUT_EXTENSIONS
from cosmos_ray.core.spec_errors import SpecError
from cosmos_ray.core.storage import Storage, StorageError, resolve_url, url_scheme

if TYPE_CHECKING:
    from cosmos_ray.core.spec import GenerationSpec

URL_SCHEMES = ("file", "s3", "gs", "gcs", "az", "abfs", "memory", "http", "https")
SEED_LIMIT = 2**32  # numpy RandomState seeds are 0 .. 2**32 - 1


def check_input_path(
    inference_type: str,
    input_path: str | None,
    sample: str,
    field: str = "input_path",
    extensions: tuple[str, ...] = INPUT_EXTENSIONS,
) -> None:
    """SpecError (naming `field`) unless an image2world / video2world spec names an input of a supported scheme
    and one of `extensions`."""
    if inference_type == "text2world":
        return
    if not input_path:
        raise SpecError(sample, field, f"is required for {inference_type}")
    scheme = url_scheme(input_path)
    if scheme is not None and scheme not in URL_SCHEMES:
        raise SpecError(
            sample,
            field,
            f"has URL scheme '{scheme}://', which is not supported "
            f"(use a local path or one of {', '.join(URL_SCHEMES)})",
        )
    path = urlsplit(input_path).path if scheme in ("http", "https") else input_path  # drop ?query
    extension = posixpath.splitext(path)[1].lower()
    if extension not in extensions:
        kind = "an image or video" if set(IMAGE_EXTENSIONS) & set(extensions) else "a video"
        raise SpecError(
            sample,
            field,
            f"has extension {extension or '(none)'!r}, which is not {kind} (one of {', '.join(extensions)})",
        )


def read_prompt(prompt_path: Any, sample: str, base_dir: str | None, storage: Storage) -> str:
    """The text at `prompt_path` (relative to `base_dir`), stripped, as the official reads it."""
    if not isinstance(prompt_path, str) or not prompt_path:
        raise SpecError(sample, "prompt_path", f"must be a non-empty string, got {prompt_path!r}")
    url = resolve_url(prompt_path, base_dir)
    try:
        return storage.read_text(url).strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.reason if isinstance(error, StorageError) else error  # it names the URL already
        raise SpecError(sample, "prompt_path", f"cannot be read from {url}: {reason}") from None


def check_autoregressive(spec: GenerationSpec, sample: str) -> None:
    """The official mode's fields, as far as they do not depend on the model (the window length does)."""
    if spec.chunk_size < 1:
        raise SpecError(sample, "chunk_size", f"must be at least 1, got {spec.chunk_size}")
    if not 0 <= spec.chunk_overlap < spec.chunk_size:
        raise SpecError(
            sample,
            "chunk_overlap",
            f"must be in 0..{spec.chunk_size - 1} (less than chunk_size {spec.chunk_size}), got {spec.chunk_overlap}",
        )
    num_chunks = count_chunks(spec.num_output_frames, spec.chunk_size, spec.chunk_overlap)
    if last_seed(spec) + num_chunks > SEED_LIMIT:
        generations = f" in its last generation (seed {last_seed(spec)})" if spec.num_generations > 1 else ""
        raise SpecError(
            sample,
            "seed",
            f"must leave one seed per chunk (chunk k uses seed + k){generations}: {num_chunks} chunks need a seed "
            f"of at most {SEED_LIMIT - num_chunks - spec.num_generations + 1}, got {spec.seed}",
        )


def last_seed(spec: GenerationSpec) -> int:
    """The seed of the spec's last generation."""
    return spec.seed + spec.num_generations - 1


def count_chunks(num_output_frames: int, chunk_size: int, chunk_overlap: int) -> int:
    """Windows of the official sliding-window layout: the first covers `chunk_size` frames, each next one
    `chunk_size - chunk_overlap` new frames, until `num_output_frames` are covered."""
    remaining = num_output_frames - chunk_size
    return 1 if remaining <= 0 else 1 + math.ceil(remaining / (chunk_size - chunk_overlap))
