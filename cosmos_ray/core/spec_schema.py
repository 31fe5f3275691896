"""The published JSON Schemas of one spec in a spec file: docs/spec.schema.json (the base models) and
docs/multiview_spec.schema.json (`2B/auto/multiview`).

`python -m jobs.spec_schema [--model M]` prints them; each is its spec model's own, so it cannot drift from what
the manifest maker, the batch job and Serve accept (a test fails when a committed file is stale).
"""

from __future__ import annotations

import json
from typing import Any

from cosmos_ray.core.multiview_spec import CAMERAS, CURRENT_ONLY_FIELDS, MultiviewSpec
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.spec_base import SpecBase


def file_schema(spec_class: type[SpecBase] = GenerationSpec) -> dict[str, Any]:
    """The JSON Schema of one spec of `spec_class` in a spec file: the model's, plus `prompt_path` in place of
    `prompt` (read by `from_dict`; Serve, which reads no server files, takes the model's schema alone)."""
    schema = spec_class.model_json_schema()
    schema["properties"]["prompt_path"] = {
        "type": "string",
        "title": "Prompt Path",
        "description": "A text file (path or URL, relative to the spec file's folder) read and stripped as the "
        "prompt; `prompt` wins if both are given.",
    }
    schema["required"].remove("prompt")
    schema["anyOf"] = [{"required": ["prompt"]}, {"required": ["prompt_path"]}]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def multiview_file_schema() -> dict[str, Any]:
    """The JSON Schema of one multiview spec in a spec file: the current format (`file_schema(MultiviewSpec)`)
    or the older one (`num_input_frames` / `n_views` in place of `inference_type`, `name` optional, `prompt_path`
    read over `prompt`)."""
    current = file_schema(MultiviewSpec)
    definitions = current.pop("$defs")
    del current["$schema"]
    properties = {key: value for key, value in current["properties"].items() if key not in CURRENT_ONLY_FIELDS}
    properties["n_views"] = {"const": len(CAMERAS), "default": len(CAMERAS), "description": "Older format: 7."}
    properties["num_input_frames"] = {
        "enum": [0, 1, 2],
        "default": 2,
        "description": "Older format: latent frames of each view to condition on (0 text2world, 1 image2world, "
        "2 video2world).",
    }
    older = {
        "type": "object",
        "title": "MultiviewSpec (older format)",
        "properties": properties,
        "additionalProperties": False,
        "allOf": [
            {"anyOf": [{"required": ["n_views"]}, {"required": ["num_input_frames"]}]},
            {"anyOf": [{"required": ["prompt"]}, {"required": ["prompt_path"]}]},
        ],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": definitions,
        "title": "MultiviewSpec",
        "oneOf": [current, older],
    }


def schema_of(spec_class: type[SpecBase]) -> dict[str, Any]:
    """The published schema of `spec_class`'s spec files."""
    return multiview_file_schema() if spec_class is MultiviewSpec else file_schema(spec_class)


def schema_json(spec_class: type[SpecBase] = GenerationSpec) -> str:
    """`schema_of(spec_class)` as the text of its docs/*.schema.json."""
    return json.dumps(schema_of(spec_class), indent=2, ensure_ascii=False) + "\n"
