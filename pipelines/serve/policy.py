"""What a client may ask for: the request body as a spec within the operator's limits, and the URLs it may name.

Plain functions and values, testable without Ray. Every refusal is an `ApiError` (status, field, reason) whose
reason never shows the server's paths or internals.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from urllib.parse import unquote

from cosmos_ray.core.limits import SpecLimits
from cosmos_ray.core.registry import OfficialModel, get_model
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.core.storage import url_scheme
from pipelines.serve.args import ServeArgs


class ApiError(Exception):
    """An error response: HTTP status, the offending field (if any) and the reason the client sees."""

    def __init__(self, status: int, field: str | None, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.field = field
        self.reason = reason
        self.headers = headers or {}


@dataclass(frozen=True)
class RequestPolicy:
    """Operator limits applied to every request before it reaches a GPU; built from the app's `ServeArgs`."""

    limits: SpecLimits
    allowed_input_prefixes: tuple[str, ...]
    allowed_output_prefixes: tuple[str, ...]
    max_request_bytes: int
    model: OfficialModel | None = None  # what `resolution` "none" and a window cost (default: the default model)

    @classmethod
    def from_args(cls, args: ServeArgs) -> RequestPolicy:
        outputs = ([args.output_url] if args.output_url else []) + args.allowed_output_prefixes
        return cls(
            limits=args.spec_limits(),
            allowed_input_prefixes=tuple(args.allowed_input_prefixes),
            allowed_output_prefixes=tuple(outputs),
            max_request_bytes=args.max_request_bytes,
            model=get_model(args.model),
        )


def parse_spec(body: bytes, policy: RequestPolicy) -> GenerationSpec:
    """The request body as a validated spec within the operator's limits; raises `ApiError`."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, None, f"body is not valid JSON: {error}") from None
    if isinstance(data, dict) and "prompt_path" in data:
        raise ApiError(422, "prompt_path", "is not accepted over HTTP (it reads a server file); send 'prompt'")
    try:
        spec = GenerationSpec.from_dict(data, source="request")
        policy.limits.check(spec, policy.model)
    except SpecError as error:
        raise ApiError(422, error.field or None, error.reason) from None
    if spec.num_generations != 1:
        raise ApiError(
            422, "num_generations", f"asks for {spec.num_generations} videos; a request makes one (send one per seed)"
        )
    if spec.input_path is not None:  # checked as the client sent it, before any resolution on the server
        check_allowed_url(data["input_path"], policy.allowed_input_prefixes, "input_path")
    return spec


def check_allowed_url(url: str, allowed_prefixes: tuple[str, ...], field: str) -> None:
    """Refuse (403) any URL outside the operator's allowed prefixes, and any that could escape one.

    Nothing is allowed by default: no local files of the server, no http(s), no object store. A URL is allowed
    when it lies under an allowed prefix at a "/" boundary; `..` segments, fsspec URL chaining (`::`), control
    characters and relative local paths (they would name a file under the server's working directory) are
    refused outright; local paths are compared after resolving symlinks. Reasons quote only what the client
    sent.
    """
    decoded = unquote(url)
    if any(ord(char) < 32 for char in decoded):
        raise ApiError(403, field, "must not contain control characters")
    if "::" in decoded:
        raise ApiError(403, field, "must be a single URL (fsspec '::' chaining is not allowed)")
    if ".." in re.split(r"[/\\]", decoded):
        raise ApiError(403, field, "must not contain '..' path segments")
    if url_scheme(url) in (None, "file") and not os.path.isabs(_local_path(url)):
        raise ApiError(403, field, f"{url!r} is a relative path: send an absolute path or a URL")
    target = _canonical_url(url)
    if not any(target.startswith(_canonical_prefix(prefix)) for prefix in allowed_prefixes):
        raise ApiError(
            403,
            field,
            f"{url!r} is not under a location this server may access (the operator configures the allowed prefixes)",
        )


def _canonical_url(url: str) -> str:
    """Local paths and file:// URLs as file:// of their real path; other URLs with a lower-case scheme."""
    scheme = url_scheme(url)
    if scheme is None or scheme == "file":
        return "file://" + os.path.realpath(os.path.expanduser(_local_path(url)))
    return scheme + url[len(scheme) :]


def _local_path(url: str) -> str:
    """The path of a local path or file:// URL."""
    return url[len("file://") :] if url_scheme(url) == "file" else url


def _canonical_prefix(prefix: str) -> str:
    return _canonical_url(prefix).rstrip("/") + "/"
