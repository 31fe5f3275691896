"""`SpecError`, and pydantic's validation errors of a spec (`GenerationSpec`, `MultiviewSpec`) in the words of
the spec.

pydantic reports every problem of a spec; `spec_error` turns the first one into a `SpecError` that names the
sample, the field (a nested one as its JSON path, e.g. `rear_left.video_path`) and the reason, in the wording
of the hand-written checks the model replaced (and says why an official field that the spec's format does not
take is refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from annotated_types import Ge, Le
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

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


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", type(None): "null"}

# pydantic reports every problem; the first one of the first kind is shown (the order the hand-written
# checks had: unknown fields, then missing ones, then wrong types, then values)
_ERROR_ORDER = {
    "extra_forbidden": 0,
    "missing": 1,
    "string_type": 2,
    "int_type": 2,
    "float_type": 2,
    "bool_type": 2,
    "model_type": 2,
}

_RANGE_NOTES = {"seed": " (a numpy RandomState seed)"}


def spec_error(error: ValidationError, sample: str, model: type[BaseModel]) -> SpecError:
    """The first problem `error` reports, as a `SpecError` naming `sample`, the field and the reason; `model` is
    the spec's class (its fields' types, ranges and names are what the reasons quote, its `REFUSED_FIELDS` the
    fields of other official formats with the reason it refuses each)."""
    first = min(error.errors(include_url=False), key=lambda detail: _ERROR_ORDER.get(detail["type"], 3))
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, SpecError):  # from a check across fields, which names its own field
        return SpecError(sample, cause.field, cause.reason)
    fields, info = model.model_fields, None
    for key in first["loc"]:  # into the nested objects: the fields of the last one, the info of the field
        if info is not None and isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            fields = info.annotation.model_fields
        info = fields.get(str(key))
    field = ".".join(str(key) for key in first["loc"])
    if first["type"] == "extra_forbidden":
        nested = len(first["loc"]) > 1
        return SpecError(sample, field, _unknown_field_reason(str(first["loc"][-1]), fields, model, nested))
    return SpecError(sample, field, _reason(first, field, info))


def _reason(detail: ErrorDetails, field: str, info: FieldInfo | None) -> str:
    kind, value = detail["type"], detail["input"]
    if kind == "missing":
        return "is required (or 'prompt_path')" if field == "prompt" else "is required"
    if kind == "model_type":
        return f"must be a JSON object, got {type(value).__name__} {value!r}"
    if _ERROR_ORDER.get(kind) == 2 and info is not None:
        annotation = info.annotation
        expected = " or ".join(_TYPE_NAMES[t] for t in (get_args(annotation) or (annotation,)))
        return f"must be {expected}, got {type(value).__name__} {value!r}"
    if kind == "literal_error" and info is not None and get_origin(info.annotation) is Literal:
        return f"must be one of {', '.join(map(repr, get_args(info.annotation)))}, got {value!r}"
    if kind in ("greater_than_equal", "less_than_equal") and info is not None:
        low = next(m.ge for m in info.metadata if isinstance(m, Ge))
        high = next((m.le for m in info.metadata if isinstance(m, Le)), None)
        if high is None:
            return f"must be at least {low}, got {value}"
        return f"must be in {low}..{high}{_RANGE_NOTES.get(field, '')}, got {value}"
    if kind == "value_error":  # from a field validator: the reason alone
        return str(detail["ctx"]["error"])
    return detail["msg"]


def _unknown_field_reason(field: str, fields: Mapping[str, FieldInfo], model: type[BaseModel], nested: bool) -> str:
    if nested:  # in an object of the spec
        return f"is not a known field (known: {', '.join(sorted(fields))})"
    refused: Mapping[str, str] = getattr(model, "REFUSED_FIELDS", {})
    if field in refused:
        return refused[field]
    if field in RUN_SETTINGS:
        return "is a run setting of the official CLI, not a sample field; pass it to the cosmos-ray job instead"
    if field == "samples":
        return (
            "belongs to the older official multi-sample file format; cosmos_ray.core.manifest.load_specs "
            "expands such files"
        )
    known = sorted([*fields, "prompt_path"])
    return f"is not a known field (known: {', '.join(known)})"


def sample_label(data: Any, source: str) -> str:
    """How errors name a spec: its name and where it came from, else where it came from."""
    name = data.get("name") if isinstance(data, dict) else None
    if isinstance(name, str) and name:
        return f"{name!r} ({source})" if source else repr(name)
    return source or "(unnamed)"
