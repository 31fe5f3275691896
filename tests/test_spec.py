"""GenerationSpec: official defaults, every rejection path (message checked), prompt_path, sample_id."""

import json
import os
import pickle
import re
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from cosmos_ray.core.spec import (
    DEFAULT_NEGATIVE_PROMPT,
    GenerationSpec,
    SpecError,
    count_chunks,
    safe_name,
)
from cosmos_ray.core.spec_schema import file_schema, schema_json
from jobs import spec_schema

TEXT = {"inference_type": "text2world", "name": "snowy_stop_light", "prompt": "A stop light in the snow."}
IMAGE = {"inference_type": "image2world", "name": "bus", "prompt": "A bus.", "input_path": "/data/bus.jpg"}
VIDEO = {"inference_type": "video2world", "name": "pour", "prompt": "A robot.", "input_path": "/data/pour.mp4"}


def parse(base: dict, **changes) -> GenerationSpec:
    return GenerationSpec.from_dict({**base, **changes}, source="specs.jsonl:4")


def rejects(data, match: str, **kwargs) -> SpecError:
    with pytest.raises(SpecError, match=match) as info:
        GenerationSpec.from_dict(data, **kwargs)
    return info.value


def test_official_defaults():
    spec = parse(TEXT)
    assert spec.negative_prompt == DEFAULT_NEGATIVE_PROMPT
    assert spec.negative_prompt.startswith("The video captures a series of frames showing ugly scenes")
    assert spec.negative_prompt.endswith("Overall, the video is of poor quality.")
    assert (spec.seed, spec.guidance, spec.num_steps) == (0, 7, 35)
    assert (spec.resolution, spec.num_output_frames, spec.fps) == ("none", 77, 16)
    assert spec.cosmos_ray_num_frames is None  # the model's native length, as the official inference
    assert "cosmos_ray_num_frames" not in spec.to_dict()
    assert spec.input_path is None
    assert spec.height_width is None


@pytest.mark.parametrize("base, frames", [(TEXT, 0), (IMAGE, 1), (VIDEO, 2)])
def test_conditional_frames_default_by_inference_type(base, frames):
    assert parse(base).num_conditional_frames == frames


def test_every_field_is_kept():
    data = {
        **VIDEO,
        "negative_prompt": "blurry",
        "seed": 42,
        "guidance": 0,
        "resolution": "480,640",
        "num_output_frames": 93,
        "num_steps": 4,
        "fps": 24,
        "num_conditional_frames": 1,
        "cosmos_ray_num_frames": 9,
    }
    spec = parse(data)
    assert spec.to_dict() == data
    assert spec.height_width == (480, 640)


def test_round_trip_through_dict():
    for base in (TEXT, IMAGE, VIDEO):
        spec = parse(base, seed=3)
        assert GenerationSpec.from_dict(spec.to_dict()) == spec


def test_autoregressive_fields_at_their_defaults_change_nothing():
    spec = parse(TEXT, enable_autoregressive=False, chunk_size=77, chunk_overlap=1)
    assert spec == parse(TEXT) and spec.to_dict() == parse(TEXT).to_dict()


def test_chunk_fields_are_ignored_when_the_mode_is_off():  # as the official script ignores them
    spec = parse(TEXT, chunk_size=33, chunk_overlap=40)
    assert (spec.chunk_size, spec.chunk_overlap) == (77, 1)
    assert spec.sample_id == parse(TEXT).sample_id


def test_num_output_frames_is_any_positive_count_when_the_mode_is_off():
    """The official field is a PositiveInt the single-window path ignores (the video has the native length)."""
    assert parse(TEXT, num_output_frames=78).num_output_frames == 78
    assert parse(TEXT, num_output_frames=1000).num_output_frames == 1000


def test_autoregressive_spec_keeps_its_fields():
    spec = parse(VIDEO, enable_autoregressive=True, num_output_frames=250, chunk_size=61, chunk_overlap=2, seed=9)
    data = spec.to_dict()
    assert (data["enable_autoregressive"], data["chunk_size"], data["chunk_overlap"]) == (True, 61, 2)
    assert data["num_output_frames"] == 250  # any length in this mode, not only 1 + 4k
    assert GenerationSpec.from_dict(data) == spec
    assert spec.sample_id != parse(VIDEO, num_output_frames=93, seed=9).sample_id


def test_cosmos_ray_num_frames_does_not_apply_to_autoregressive_specs():
    """An autoregressive video is num_output_frames long; our single-window length field would be ambiguous."""
    data = {**VIDEO, "enable_autoregressive": True, "num_output_frames": 200, "cosmos_ray_num_frames": 9}
    rejects(data, r"field 'cosmos_ray_num_frames' does not apply in the autoregressive mode")


@pytest.mark.parametrize(
    "frames, size, overlap, chunks",
    [(1, 77, 1, 1), (77, 77, 1, 1), (78, 77, 1, 2), (153, 77, 1, 2), (154, 77, 1, 3), (20, 8, 0, 3), (6, 2, 1, 5)],
)
def test_count_chunks(frames, size, overlap, chunks):
    assert count_chunks(frames, size, overlap) == chunks


def test_text2world_ignores_input_path():
    assert parse(TEXT, input_path="/data/ignored.png").input_path is None


def test_resolution_spaces_are_normalized():
    assert parse(TEXT, resolution=" 704, 1280 ").resolution == "704,1280"


def test_relative_input_path_resolves_against_base_dir(tmp_path):
    local = GenerationSpec.from_dict({**IMAGE, "input_path": "media/bus.jpg"}, base_dir=str(tmp_path))
    assert local.input_path == os.path.join(str(tmp_path), "media", "bus.jpg")
    remote = GenerationSpec.from_dict({**IMAGE, "input_path": "bus.jpg"}, base_dir="s3://bucket/specs")
    assert remote.input_path == "s3://bucket/specs/bus.jpg"
    url = GenerationSpec.from_dict({**IMAGE, "input_path": "gs://b/x.png"}, base_dir=str(tmp_path))
    assert url.input_path == "gs://b/x.png"


def test_relative_input_path_without_base_dir_uses_working_directory():
    spec = GenerationSpec.from_dict({**IMAGE, "input_path": "bus.jpg"})
    assert spec.input_path == os.path.join(os.getcwd(), "bus.jpg")


def test_prompt_path_is_read_stripped_relative_to_base_dir(tmp_path):
    (tmp_path / "prompt.txt").write_text("  A quiet street.\n\n")
    data = {"inference_type": "text2world", "name": "street", "prompt_path": "prompt.txt"}
    spec = GenerationSpec.from_dict(data, base_dir=str(tmp_path))
    assert spec.prompt == "A quiet street."
    assert "prompt_path" not in spec.to_dict()


def test_prompt_wins_over_prompt_path_like_official():
    spec = parse(TEXT, prompt_path="never-read.txt")
    assert spec.prompt == TEXT["prompt"]


def test_prompt_path_through_memory_filesystem():
    from cosmos_ray.core.storage import Storage

    Storage().write_bytes_atomic("memory://specs-test/p.txt", b"From memory.\n")
    data = {"inference_type": "text2world", "name": "m", "prompt_path": "p.txt"}
    assert GenerationSpec.from_dict(data, base_dir="memory://specs-test").prompt == "From memory."


def test_sample_id_is_name_plus_content_hash():
    spec = parse(TEXT)
    name, digest = spec.sample_id.rsplit("-", 1)
    assert name == "snowy_stop_light" and len(digest) == 12 and int(digest, 16) >= 0
    assert parse(TEXT).sample_id == spec.sample_id
    assert parse(TEXT, seed=1).sample_id != spec.sample_id
    assert parse(TEXT, fps=24).sample_id != spec.sample_id
    assert parse(TEXT, cosmos_ray_num_frames=9).sample_id != spec.sample_id
    # The name is not part of the hash: renaming keeps the digest.
    assert parse(TEXT, name="other").sample_id.endswith(digest)


def test_safe_name():
    assert safe_name("robot pouring/../x!") == "robot_pouring_.._x"
    assert safe_name("...") == "sample"
    assert len(safe_name("a" * 300)) == 64


def test_direct_construction_is_validated():
    spec = GenerationSpec(inference_type="video2world", name="v", prompt="p", input_path="/x.mp4")
    assert spec.num_conditional_frames == 2
    with pytest.raises(SpecError, match="sample 't': field 'guidance' must be in 0..7, got 8"):
        GenerationSpec(inference_type="text2world", name="t", prompt="p", guidance=8)
    with pytest.raises(ValidationError, match="frozen"):
        parse(TEXT).seed = 3  # type: ignore[misc]  # assigning is the point


# --- rejections: sample, field and reason are in the message -------------------------------------------------

LABEL = r"sample 'snowy_stop_light' \(specs.jsonl:4\): "


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"inference_type": "world2world"},
            "field 'inference_type' must be one of text2world, image2world, video2world, got 'world2world'",
        ),
        ({"seed": -1}, r"field 'seed' must be in 0..4294967295 \(a numpy RandomState seed\), got -1"),
        ({"seed": 2**32}, "field 'seed' must be in 0..4294967295"),
        ({"guidance": -1}, r"field 'guidance' must be in 0..7, got -1"),
        ({"guidance": 8}, r"field 'guidance' must be in 0..7, got 8"),
        ({"num_output_frames": 0}, "field 'num_output_frames' must be at least 1, got 0"),
        ({"cosmos_ray_num_frames": 0}, r"field 'cosmos_ray_num_frames' must be 1 \+ 4k .*or null .*got 0"),
        ({"cosmos_ray_num_frames": 10}, r"field 'cosmos_ray_num_frames' must be 1 \+ 4k .*got 10"),
        ({"num_steps": 0}, "field 'num_steps' must be at least 1, got 0"),
        ({"fps": 0}, r"field 'fps' must be in 1..240, got 0"),
        ({"fps": 241}, r"field 'fps' must be in 1..240, got 241"),
        ({"num_conditional_frames": 1}, "field 'num_conditional_frames' must be 0 for text2world, got 1"),
        ({"resolution": "720p"}, 'field \'resolution\' must be "none" or "H,W"'),
        (
            {"resolution": "704,1281"},
            "field 'resolution' must have a height and width that are positive multiples of 16, got '704,1281'",
        ),
        ({"resolution": "0,1280"}, "field 'resolution' must have a height and width that are positive"),
    ],
)
def test_out_of_range(changes, message):
    rejects({**TEXT, **changes}, LABEL + message, source="specs.jsonl:4")


def test_empty_name():
    rejects({**TEXT, "name": "  "}, r"field 'name' must not be empty")


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("seed", "1", "an integer, got str '1'"),
        ("seed", 1.0, "an integer, got float 1.0"),
        ("guidance", True, "an integer, got bool True"),
        ("num_steps", None, "an integer, got NoneType None"),
        ("num_output_frames", [77], "an integer, got list"),
        ("fps", 16.5, "an integer, got float 16.5"),
        ("prompt", 3, "a string, got int 3"),
        ("negative_prompt", None, "a string, got NoneType None"),
        ("resolution", [704, 1280], "a string, got list"),
        ("inference_type", 1, "a string, got int 1"),
        ("num_conditional_frames", "2", "an integer or null, got str '2'"),
        ("cosmos_ray_num_frames", 9.0, "an integer or null, got float 9.0"),
    ],
)
def test_wrong_type(field, value, expected):
    rejects({**TEXT, field: value}, LABEL + f"field '{field}' must be {expected}", source="specs.jsonl:4")


def test_wrong_type_name_and_input_path():
    rejects(
        {**TEXT, "name": 5}, r"sample specs.jsonl:4: field 'name' must be a string, got int 5", source="specs.jsonl:4"
    )
    rejects({**IMAGE, "input_path": 5}, r"field 'input_path' must be a string or null, got int 5")


def test_not_an_object():
    rejects(["a"], r"^sample specs.jsonl:4: is not a JSON object but list$", source="specs.jsonl:4")
    rejects("x", r"^sample \(unnamed\): is not a JSON object but str$")


@pytest.mark.parametrize("field", ["inference_type", "name"])
def test_missing_required(field):
    data = {k: v for k, v in TEXT.items() if k != field}
    rejects(data, f"field '{field}' is required$")


def test_missing_prompt():
    data = {k: v for k, v in TEXT.items() if k != "prompt"}
    rejects(data, LABEL + r"field 'prompt' is required \(or 'prompt_path'\)", source="specs.jsonl:4")


@pytest.mark.parametrize("base", [IMAGE, VIDEO])
def test_missing_input_path(base):
    data = {k: v for k, v in base.items() if k != "input_path"}
    rejects(data, f"sample '{base['name']}': field 'input_path' is required for {base['inference_type']}")
    rejects({**data, "input_path": ""}, "field 'input_path' is required")
    rejects({**data, "input_path": None}, "field 'input_path' is required")


def test_spec_error_pickles_with_its_fields():  # it crosses from Ray rank workers to their callers
    error = pickle.loads(pickle.dumps(rejects({**TEXT, "guidance": 9}, "guidance")))
    assert (error.field, str(error)) == ("guidance", f"sample 'snowy_stop_light': field 'guidance' {error.reason}")


def test_unknown_field():
    rejects(
        {**TEXT, "guidence": 3},
        LABEL + r"field 'guidence' is not a known field \(known: .*guidance",
        source="specs.jsonl:4",
    )


@pytest.mark.parametrize(
    "changes, field, reason",
    [
        ({"enable_autoregressive": "yes"}, "enable_autoregressive", "must be a boolean, got str 'yes'"),
        ({"enable_autoregressive": 1}, "enable_autoregressive", "must be a boolean, got int 1"),
        ({"chunk_size": 77.0}, "chunk_size", "must be an integer, got float 77.0"),
        ({"chunk_size": 0}, "chunk_size", "must be at least 1, got 0"),
        ({"chunk_overlap": 77}, "chunk_overlap", r"must be in 0..76 \(less than chunk_size 77\), got 77"),
        ({"chunk_overlap": -1}, "chunk_overlap", r"must be in 0..76 \(less than chunk_size 77\), got -1"),
        ({"num_output_frames": 0}, "num_output_frames", "must be at least 1, got 0"),
        (
            {"num_output_frames": 153, "seed": 2**32 - 1},
            "seed",
            r"must leave one seed per chunk \(chunk k uses seed \+ k\): 2 chunks need a seed of at most 4294967294",
        ),
    ],
)
def test_invalid_autoregressive_fields(changes, field, reason):
    data = {**TEXT, "enable_autoregressive": True, "num_output_frames": 200, **changes}
    rejects(data, LABEL + f"field '{field}' {reason}", source="specs.jsonl:4")


@pytest.mark.parametrize("field", ["model", "checkpoint_path", "context_parallel_size", "disable_guardrails"])
def test_run_settings_are_not_sample_fields(field):
    rejects({**TEXT, field: "x"}, f"field '{field}' is a run setting of the official CLI, not a sample field")


@pytest.mark.parametrize("field", ["n_views", "num_input_frames", "front_wide"])
def test_multiview_fields(field):
    rejects({**TEXT, field: 1}, f"field '{field}' belongs to the official multiview format")


def test_older_samples_format_points_to_the_expander():
    rejects({"inference_type": "text2world", "samples": {}}, "field 'samples' belongs to the older official")


@pytest.mark.parametrize("url", ["ftp://host/a.mp4", "hdfs://nn/a.mp4", "ssh://h/a.png"])
def test_unsupported_url_scheme(url):
    scheme = url.split("://")[0]
    rejects({**VIDEO, "input_path": url}, f"field 'input_path' has URL scheme '{scheme}://', which is not supported")


@pytest.mark.parametrize(
    "url",
    [
        "file:///d/a.mp4",
        "s3://b/a.mp4",
        "gs://b/a.png",
        "gcs://b/a.jpg",
        "az://c/a.jpeg",
        "abfs://c/a.webp",
        "memory://a.mp4",
        "http://h/a.mp4",
        "https://h/a.PNG",
    ],
)
def test_supported_url_schemes(url):
    assert parse(VIDEO, input_path=url).input_path == url


@pytest.mark.parametrize("path, shown", [("/d/a.gif", "'.gif'"), ("/d.mp4/video", "'(none)'")])
def test_input_extension(path, shown):
    message = re.escape(f"field 'input_path' has extension {shown}, which is not an image or video (one of .png,")
    rejects({**IMAGE, "input_path": path}, message)


def test_input_extension_ignores_url_query():
    assert parse(VIDEO, input_path="https://h/a.mp4?sig=1").input_path == "https://h/a.mp4?sig=1"


def test_video2world_conditional_frames():
    assert parse(VIDEO, num_conditional_frames=1).num_conditional_frames == 1
    rejects({**VIDEO, "num_conditional_frames": 3}, "field 'num_conditional_frames' must be 1 or 2 for video2world")
    rejects({**IMAGE, "num_conditional_frames": 2}, "field 'num_conditional_frames' must be 1 for image2world")


def test_prompt_path_errors(tmp_path):
    base = {"inference_type": "text2world", "name": "p"}
    rejects(
        {**base, "prompt_path": "missing.txt"},
        f"sample 'p': field 'prompt_path' cannot be read from {tmp_path}/missing.txt",
        base_dir=str(tmp_path),
    )
    rejects({**base, "prompt_path": 3}, "field 'prompt_path' must be a non-empty string, got 3")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    rejects({**base, "prompt_path": "bad.txt"}, "field 'prompt_path' cannot be read", base_dir=str(tmp_path))


# --- num_generations (ours) ---------------------------------------------------------------------------------


def test_generations_take_consecutive_seeds_and_distinct_ids():
    spec = parse(TEXT, seed=5, num_generations=3)
    generations = spec.generations()
    assert [g.seed for g in generations] == [5, 6, 7]
    assert {g.num_generations for g in generations} == {1} and {g.name for g in generations} == {spec.name}
    assert len({g.sample_id for g in generations}) == 3
    assert [g.sample_id for g in spec.generations()] == [g.sample_id for g in generations]  # deterministic


def test_a_generation_is_the_spec_written_with_its_seed():
    """So raising num_generations later keeps the videos already made, and one generation reruns alone."""
    second = parse(TEXT, seed=5, num_generations=3).generations()[1]
    assert second == parse(TEXT, seed=6)
    assert second.sample_id == parse(TEXT, seed=6).sample_id
    assert (
        parse(TEXT, seed=5, num_generations=2).generations() == parse(TEXT, seed=5, num_generations=3).generations()[:2]
    )


def test_num_generations_1_leaves_the_spec_json_and_id_unchanged():
    assert "num_generations" not in parse(TEXT).to_dict()
    assert parse(TEXT, num_generations=1).sample_id == parse(TEXT).sample_id
    assert parse(TEXT).generations() == [parse(TEXT)]
    spec = parse(TEXT, num_generations=4)
    assert spec.to_dict()["num_generations"] == 4 and GenerationSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "changes, field, reason",
    [
        ({"num_generations": 0}, "num_generations", "must be at least 1, got 0"),
        ({"num_generations": 2.0}, "num_generations", "must be an integer, got float 2.0"),
        ({"num_generations": True}, "num_generations", "must be an integer, got bool True"),
        (
            {"num_generations": 3, "seed": 2**32 - 2},
            "num_generations",
            r"needs seeds 4294967294..4294967296 \(one per generation\), beyond the largest seed 4294967295",
        ),
        (
            {"num_generations": 2, "seed": 2**32 - 2, "enable_autoregressive": True, "num_output_frames": 153},
            "seed",
            r"must leave one seed per chunk \(chunk k uses seed \+ k\) in its last generation \(seed 4294967295\): "
            r"2 chunks need a seed of at most 4294967293, got 4294967294",
        ),
    ],
)
def test_invalid_num_generations(changes, field, reason):
    rejects({**TEXT, **changes}, LABEL + f"field '{field}' {reason}", source="specs.jsonl:4")


# --- the published JSON Schema ------------------------------------------------------------------------------

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
