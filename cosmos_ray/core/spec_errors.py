"""`SpecError`, and pydantic's validation errors of a `GenerationSpec` in the words of the spec.

pydantic reports every problem of a spec; `spec_error` turns the first one into a `SpecError` that names the
sample, the field and the reason, in the wording of the hand-written checks the model replaced (and says why
an official field that cosmos-ray does not take is refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from annotated_types import Ge, Le
from pydantic import ValidationError
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


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", type(None): "null"}

# pydantic reports every problem; the first one of the first kind is shown (the order the hand-written
# checks had: unknown fields, then missing ones, then wrong types, then values)
_ERROR_ORDER = {"extra_forbidden": 0, "missing": 1, "string_type": 2, "int_type": 2, "bool_type": 2}

_RANGE_NOTES = {"seed": " (a numpy RandomState seed)"}


def spec_error(error: ValidationError, sample: str, fields: Mapping[str, FieldInfo]) -> SpecError:
    """The first problem `error` reports, as a `SpecError` naming `sample`, the field and the reason; `fields`
    are the spec model's (`GenerationSpec.model_fields`: the types, ranges and names the reasons quote)."""
    first = min(error.errors(include_url=False), key=lambda detail: _ERROR_ORDER.get(detail["type"], 3))
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, SpecError):  # from a check across fields, which names its own field
        return SpecError(sample, cause.field, cause.reason)
    field = str(first["loc"][0]) if first["loc"] else ""
    return SpecError(sample, field, _reason(first, field, fields))


def _reason(detail: ErrorDetails, field: str, fields: Mapping[str, FieldInfo]) -> str:
    kind, value = detail["type"], detail["input"]
    if kind == "extra_forbidden":
        return _unknown_field_reason(field, fields)
    if kind == "missing":
        return "is required (or 'prompt_path')" if field == "prompt" else "is required"
    if _ERROR_ORDER.get(kind) == 2:
        annotation = fields[field].annotation
        expected = " or ".join(_TYPE_NAMES[t] for t in (get_args(annotation) or (annotation,)))
        return f"must be {expected}, got {type(value).__name__} {value!r}"
    if kind in ("greater_than_equal", "less_than_equal"):
        metadata = fields[field].metadata
        low = next(m.ge for m in metadata if isinstance(m, Ge))
        high = next((m.le for m in metadata if isinstance(m, Le)), None)
        if high is None:
            return f"must be at least {low}, got {value}"
        return f"must be in {low}..{high}{_RANGE_NOTES.get(field, '')}, got {value}"
    if kind == "value_error":  # from a field validator: the reason alone
        return str(detail["ctx"]["error"])
    return detail["msg"]


def _unknown_field_reason(field: str, fields: Mapping[str, FieldInfo]) -> str:
    if field in RUN_SETTINGS:
        return "is a run setting of the official CLI, not a sample field; pass it to the cosmos-ray job instead"
    if field in MULTIVIEW_FIELDS:
        return "belongs to the official multiview format, which cosmos-ray does not support"
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
