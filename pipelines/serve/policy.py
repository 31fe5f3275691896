"""What a client may ask for: the request body as a spec within the operator's limits, the URLs it may name, and
the LoRA adapters it may name (by the names the operator allows).

Plain functions and values, testable without Ray. Every refusal is an `ApiError` (status, field, reason) whose
reason never shows the server's paths or internals.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.limits import SpecLimits
from cosmos_ray.core.registry import DEFAULT_MODEL, MODELS, OfficialModel, get_model
from cosmos_ray.core.spec_errors import SpecError
from cosmos_ray.core.spec_formats import Spec, spec_class
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
    allowed_loras: dict[str, str] = field(default_factory=dict)  # adapter name -> its file (path or URL)
    checkpoint: str | None = None  # the deployment's DiT checkpoint (None: the stock weights)
    default_loras: tuple[LoraRef, ...] = ()  # the adapters of a request that names none
    # the deployment's model: its spec format, and what `resolution` "none" and a window cost (default: the default
    # model)
    model: OfficialModel = MODELS[DEFAULT_MODEL]

    @classmethod
    def from_args(cls, args: ServeArgs) -> RequestPolicy:
        outputs = ([args.output_url] if args.output_url else []) + args.allowed_output_prefixes
        engine = args.engine_options()
        return cls(
            limits=args.spec_limits(),
            allowed_input_prefixes=tuple(args.allowed_input_prefixes),
            allowed_output_prefixes=tuple(outputs),
            max_request_bytes=args.max_request_bytes,
            allowed_loras=dict(args.allowed_loras),
            checkpoint=engine.checkpoint_path,
            default_loras=engine.loras,
            model=get_model(args.model),
        )


def parse_spec(body: bytes, policy: RequestPolicy) -> Spec:
    """The request body as a validated spec in the format of the deployment's model, within the operator's
    limits, with the deployment's weights (its checkpoint; its default adapters unless the request names adapters,
    by allowed name); raises `ApiError`."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, None, f"body is not valid JSON: {error}") from None
    if isinstance(data, dict) and "prompt_path" in data:
        raise ApiError(422, "prompt_path", "is not accepted over HTTP (it reads a server file); send 'prompt'")
    if isinstance(data, dict) and isinstance(data.get("cosmos_ray_loras"), list):
        data = {**data, "cosmos_ray_loras": [_allowed_adapter(entry, policy) for entry in data["cosmos_ray_loras"]]}
    try:
        spec = spec_class(policy.model.name).from_dict(data, source="request")
        policy.limits.check(spec, policy.model)
    except SpecError as error:
        raise ApiError(422, error.field or None, error.reason) from None
    if spec.cosmos_ray_checkpoint not in (None, policy.checkpoint):
        raise ApiError(
            422,
            "cosmos_ray_checkpoint",
            "names a checkpoint this server does not run (one deployment serves one checkpoint); leave it out",
        )
    spec = spec.for_weights(policy.checkpoint, policy.default_loras)
    if spec.num_generations != 1:
        raise ApiError(
            422, "num_generations", f"asks for {spec.num_generations} videos; a request makes one (send one per seed)"
        )
    for input_field in spec.input_urls():  # checked as the client sent it, before any resolution on the server
        check_allowed_url(_sent(data, input_field), policy.allowed_input_prefixes, input_field)
    return spec


def _sent(data: dict[str, Any], input_field: str) -> str:
    """The value of an input field (a dotted path: "input_path", "front_wide.video_path") as the body has it."""
    value: Any = data
    for key in input_field.split("."):
        value = value[key]
    return value


def _allowed_adapter(entry: Any, policy: RequestPolicy) -> Any:
    """A request's adapter entry with its name replaced by the file the operator allows under that name; 422
    naming the allowed names for any other name (a malformed entry is left to the spec's validation)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return entry
    name = entry["path"]
    if name not in policy.allowed_loras:
        allowed = ", ".join(sorted(policy.allowed_loras)) or "none (the operator allows no adapters)"
        raise ApiError(
            422,
            "cosmos_ray_loras",
            f"adapter {name!r} is not one this server allows; send the name of an allowed adapter as 'path' "
            f"(allowed: {allowed})",
        )
    return {**entry, "path": policy.allowed_loras[name]}


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
