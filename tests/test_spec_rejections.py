"""GenerationSpec's rejection paths: each message names the sample, the field and the reason (out of range,
wrong type, missing, unknown, official fields of other formats, URL schemes and extensions, prompt_path)."""

import pickle
import re

import pytest

from tests.spec_helpers import IMAGE, LABEL, TEXT, VIDEO, parse, rejects


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
