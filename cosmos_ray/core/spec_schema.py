"""The published JSON Schema of one generation spec in a spec file: docs/spec.schema.json.

`python -m jobs.spec_schema` prints it; it is the spec model's own, so it cannot drift from what the manifest
maker, the batch job and Serve accept (a test fails when the committed file is stale).
"""

from __future__ import annotations

import json
from typing import Any

from cosmos_ray.core.spec import GenerationSpec


def file_schema() -> dict[str, Any]:
    """The JSON Schema of one spec in a spec file: the model's, plus `prompt_path` in place of `prompt`
    (read by `from_dict`; Serve, which reads no server files, takes the model's schema alone)."""
    schema = GenerationSpec.model_json_schema()
    schema["properties"]["prompt_path"] = {
        "type": "string",
        "title": "Prompt Path",
        "description": "A text file (path or URL, relative to the spec file's folder) read and stripped as the "
        "prompt; `prompt` wins if both are given.",
    }
    schema["required"].remove("prompt")
    schema["anyOf"] = [{"required": ["prompt"]}, {"required": ["prompt_path"]}]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_json() -> str:
    """`file_schema()` as the text of docs/spec.schema.json."""
    return json.dumps(file_schema(), indent=2, ensure_ascii=False) + "\n"
