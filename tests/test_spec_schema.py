"""The published JSON Schema of a spec file: current with the model, accepting the example specs, rejecting what
GenerationSpec rejects, and printed by `python -m jobs.spec_schema`."""

import json
import re
from pathlib import Path

import jsonschema
import pytest

from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.spec_schema import file_schema, schema_json
from jobs import spec_schema
from tests.spec_helpers import TEXT, rejects

ROOT = Path(__file__).resolve().parent.parent


def test_published_schema_is_current():
    """docs/spec.schema.json is what `python -m jobs.spec_schema` writes: it cannot drift from the model."""
    assert (ROOT / "docs" / "spec.schema.json").read_text(encoding="utf-8") == schema_json()


def test_schema_accepts_the_example_specs():
    validator = jsonschema.Draft202012Validator(file_schema())
    lines = (ROOT / "examples" / "specs.jsonl").read_text().splitlines()
    specs = [json.loads(line) for line in lines if line.strip()]
    specs += [json.loads(path.read_text()) for path in sorted((ROOT / "examples").glob("*.json"))]
    assert len(specs) >= 4
    for spec in specs:
        validator.validate(spec)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"guidance": 8}, "8 is greater than the maximum of 7"),
        ({"seed": True}, "True is not of type 'integer'"),
        ({"inference_type": "world2world"}, "'world2world' is not one of"),
        ({"guidence": 3}, "Additional properties are not allowed"),
        ({"prompt": None}, "None is not of type 'string'"),
    ],
)
def test_schema_rejects_what_the_model_rejects(changes, words):
    rejects({**TEXT, **changes}, "^sample .snowy_stop_light.: field ")  # the model refuses it too
    with pytest.raises(jsonschema.ValidationError, match=re.escape(words)):
        jsonschema.validate({**TEXT, **changes}, file_schema())


def test_schema_needs_prompt_or_prompt_path():
    without_prompt = {k: v for k, v in TEXT.items() if k != "prompt"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(without_prompt, file_schema())
    jsonschema.validate({**without_prompt, "prompt_path": "p.txt"}, file_schema())
    assert "prompt_path" not in GenerationSpec.model_json_schema()["properties"]  # Serve's body: no server files


def test_schema_command_prints_the_schema(capsys):
    spec_schema.main([])
    assert capsys.readouterr().out == schema_json()
