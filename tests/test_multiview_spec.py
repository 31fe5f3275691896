"""MultiviewSpec: the official multiview inference JSON of `2B/auto/multiview`, current and older format, with the
official defaults; every rejection names the sample, the camera and the field; sample ids; the published schema;
the dispatch by model; the base format refusing multiview fields (and the reverse)."""

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cosmos_ray.core.multiview_spec import (
    BASE_ONLY_FIELDS,
    CAMERAS,
    FRAMES_PER_VIEW,
    MULTIVIEW_MODEL,
    MULTIVIEW_ONLY_FIELDS,
    OLDER_FORMAT_FIELDS,
    MultiviewSpec,
)
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.core.spec_formats import parse_spec
from cosmos_ray.core.spec_schema import schema_json, schema_of
from jobs import spec_schema

ROOT = Path(__file__).resolve().parent.parent
VIDEO_FILES = {  # the official sample's cameras and files, in the sample's (not the sequence's) order
    "front_wide": "urban_freeway_front_wide_120fov.mp4",
    "cross_left": "urban_freeway_cross_left_120fov.mp4",
    "cross_right": "urban_freeway_cross_right_120fov.mp4",
    "rear_left": "urban_freeway_rear_left_70fov.mp4",
    "rear_right": "urban_freeway_rear_right_70fov.mp4",
    "rear": "urban_freeway_rear_30fov.mp4",
    "front_tele": "urban_freeway_front_tele_30fov.mp4",
}
VIEWS = {camera: {"video_path": f"/data/{name}"} for camera, name in VIDEO_FILES.items()}
# The shape of the current official sample (cosmos_predict2/gradio/sample_data.py at 7e5ffc83), prompt inline.
CURRENT = {"inference_type": "video2world", "name": "urban_freeway", "prompt": "A freeway.", **VIEWS}
# The shape of the older official sample (assets/multiview/multiview.json at 6b54ba6), prompt inline.
OLDER = {"prompt": "A freeway.", "num_input_frames": 1, **VIEWS}
LABEL = r"sample 'urban_freeway' \(mv.json\): "


def parse(data: dict, **kwargs) -> MultiviewSpec:
    return MultiviewSpec.from_dict(data, source="mv.json", **kwargs)


def rejects(data, match: str, **kwargs) -> SpecError:
    with pytest.raises(SpecError, match=match) as info:
        parse(data, **kwargs)
    return info.value


def test_current_format_with_the_official_defaults():
    spec = parse(CURRENT)
    # MultiviewInferenceArguments' defaults (cosmos_predict2/multiview_config.py at 7e5ffc83)
    assert (spec.seed, spec.guidance, spec.num_steps, spec.fps) == (0, 3, 35, 30)
    assert (spec.stack_mode, spec.control_weight, spec.enable_autoregressive) == ("time", 1.0, False)
    assert (spec.num_chunks, spec.chunk_overlap) == (2, 1)
    assert spec.negative_prompt is None
    assert spec.num_conditional_frames == 2
    assert spec.frames_per_view == FRAMES_PER_VIEW == 29
    assert list(spec.video_paths) == list(CAMERAS)  # the sequence order, not the JSON's
    assert spec.video_paths["rear_left"] == "/data/urban_freeway_rear_left_70fov.mp4"


def test_sequence_order_of_the_views():
    # cosmos_predict2/multiview.py (camera_keys) at 7e5ffc83; VIEW_INDEX_DICT at 6b54ba6
    assert CAMERAS == ("front_wide", "cross_right", "rear_right", "rear", "rear_left", "cross_left", "front_tele")


@pytest.mark.parametrize("inference_type, frames", [("text2world", 0), ("image2world", 1), ("video2world", 2)])
def test_conditioning_frames_by_inference_type(inference_type, frames):
    assert parse({**CURRENT, "inference_type": inference_type}).num_conditional_frames == frames


def test_older_format_is_the_current_one():
    older = parse(OLDER)
    assert older.inference_type == "image2world"  # num_input_frames 1
    assert older.name == "output_0"  # the older script's output name
    assert older == parse({**CURRENT, "inference_type": "image2world", "name": "output_0"})
    assert older.to_dict() == parse(older.to_dict()).to_dict()  # stored in the current format


@pytest.mark.parametrize("frames, inference_type", [(0, "text2world"), (1, "image2world"), (2, "video2world")])
def test_older_num_input_frames(frames, inference_type):
    assert parse({**OLDER, "num_input_frames": frames}).inference_type == inference_type


def test_older_defaults():
    # the older MultiviewInferenceArguments (6b54ba6): num_input_frames 2, n_views 7, guidance 3, seed 0, ...
    spec = parse({"prompt": "p", "n_views": 7, "name": "a", **VIEWS})
    assert (spec.inference_type, spec.seed, spec.guidance, spec.num_steps, spec.fps) == ("video2world", 0, 3, 35, 30)


def test_prompt_path_wins_in_the_older_format_only(tmp_path):
    (tmp_path / "prompt.txt").write_text("  From the file.\n")
    both = {"prompt": "Inline.", "prompt_path": "prompt.txt"}
    assert parse({**OLDER, **both}, base_dir=str(tmp_path)).prompt == "From the file."
    assert parse({**CURRENT, **both}, base_dir=str(tmp_path)).prompt == "Inline."


def test_relative_video_paths_resolve_against_the_spec_folder(tmp_path):
    views = {camera: {"video_path": name} for camera, name in VIDEO_FILES.items()}
    spec = parse({**CURRENT, **views}, base_dir=str(tmp_path))
    assert spec.video_paths["rear"] == str(tmp_path / VIDEO_FILES["rear"])


def test_fsspec_urls_are_inputs():
    views = {camera: {"video_path": f"s3://bucket/clips/{name}"} for camera, name in VIDEO_FILES.items()}
    assert parse({**CURRENT, **views}).video_paths["front_tele"] == f"s3://bucket/clips/{VIDEO_FILES['front_tele']}"


def test_text2world_needs_and_keeps_no_videos():
    spec = parse({"inference_type": "text2world", "name": "urban_freeway", "prompt": "A freeway."})
    assert set(spec.video_paths.values()) == {None}
    with_videos = parse({**CURRENT, "inference_type": "text2world"})  # ignored, as officially
    assert with_videos == spec and not set(CAMERAS) & set(with_videos.to_dict())


def test_ignored_fields_stay_out_of_the_spec_json():
    spec = parse({**CURRENT, "control_weight": 0.5, "num_chunks": 3, "chunk_overlap": 2, "negative_prompt": None})
    assert spec == parse(CURRENT)
    assert not {"control_weight", "num_chunks", "chunk_overlap", "enable_autoregressive", "negative_prompt"} & set(
        spec.to_dict()
    )
    assert parse({**CURRENT, "control_weight": 0}) == spec  # an integer is a number, as officially


def test_autoregressive_fields():
    spec = parse({**CURRENT, "enable_autoregressive": True, "num_chunks": 3, "chunk_overlap": 2})
    assert (spec.num_chunks, spec.chunk_overlap) == (3, 2)
    assert spec.frames_per_view == 29 + 2 * 27
    assert {"enable_autoregressive", "num_chunks", "chunk_overlap"} <= set(spec.to_dict())


def test_round_trip_and_json():
    spec = parse({**CURRENT, "seed": 5, "stack_mode": "height", "num_generations": 2})
    assert parse(spec.to_dict()) == spec
    assert json.loads(spec.to_json()) == spec.to_dict()


def test_generations_and_weights():
    spec = parse({**CURRENT, "seed": 10, "num_generations": 3})
    assert [g.seed for g in spec.generations()] == [10, 11, 12]
    assert all(isinstance(g, MultiviewSpec) and g.num_generations == 1 for g in spec.generations())
    weighted = spec.for_weights("s3://b/mv.pt")
    assert weighted.cosmos_ray_checkpoint == "s3://b/mv.pt" and weighted.sample_id != spec.sample_id
    with pytest.raises(SpecError, match="field 'cosmos_ray_checkpoint' names checkpoint 's3://b/mv.pt'"):
        weighted.for_weights(None)


def test_sample_ids_stable_and_distinct():
    spec = parse(CURRENT)
    assert spec.sample_id == parse(dict(reversed(list(CURRENT.items())))).sample_id  # key order
    assert spec.sample_id.startswith("urban_freeway-") and len(spec.sample_id) == len("urban_freeway-") + 12
    changed: list[dict[str, Any]] = [
        {"seed": 1},
        {"guidance": 4},
        {"fps": 10},
        {"stack_mode": "height"},
        {"inference_type": "image2world"},
        {"rear": {"video_path": "/data/other.mp4"}},
        {"enable_autoregressive": True},
    ]
    ids = {parse({**CURRENT, **change}).sample_id for change in changed}
    assert spec.sample_id not in ids and len(ids) == len(changed)
    assert parse({**CURRENT, "control_weight": 0.3}).sample_id == spec.sample_id  # read by nothing


def test_local_videos_count_by_content(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        for name in VIDEO_FILES.values():
            (folder / name).write_bytes(name.encode())
    views = {camera: {"video_path": name} for camera, name in VIDEO_FILES.items()}
    first = parse({**CURRENT, **views}, base_dir=str(one))
    assert first.sample_id == parse({**CURRENT, **views}, base_dir=str(two)).sample_id  # moved, same bytes
    (two / VIDEO_FILES["cross_left"]).write_bytes(b"another clip")
    assert first.sample_id != parse({**CURRENT, **views}, base_dir=str(two)).sample_id


# --- rejections: each names the sample, the field (a camera's as camera.video_path) and the reason ----------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"inference_type": "world2world"}, "field 'inference_type' must be one of text2world, image2world"),
        ({"seed": -1}, r"field 'seed' must be in 0..4294967295"),
        ({"guidance": 8}, r"field 'guidance' must be in 0..7, got 8"),
        ({"num_steps": 0}, "field 'num_steps' must be at least 1, got 0"),
        ({"fps": 0}, r"field 'fps' must be in 1..240, got 0"),
        ({"fps": 30.0}, "field 'fps' must be an integer, got float 30.0"),
        ({"stack_mode": "grid"}, "field 'stack_mode' must be one of 'time', 'height', got 'grid'"),
        ({"control_weight": 1.5}, r"field 'control_weight' must be in 0.0..1.0, got 1.5"),
        ({"control_weight": True}, "field 'control_weight' must be a number, got bool True"),
        ({"num_chunks": 0}, "field 'num_chunks' must be at least 1, got 0"),
        ({"enable_autoregressive": True, "chunk_overlap": 8}, r"field 'chunk_overlap' must be in 0..7 .*got 8"),
        ({"enable_autoregressive": True, "chunk_overlap": -1}, r"field 'chunk_overlap' must be in 0..7 .*got -1"),
        ({"negative_prompt": "blurry"}, "field 'negative_prompt' is not taken by model 2B/auto/multiview"),
        ({"seed": 2**32 - 1, "num_generations": 2}, "field 'num_generations' needs seeds"),
    ],
)
def test_invalid_values(changes, message):
    rejects({**CURRENT, **changes}, LABEL + message)


@pytest.mark.parametrize("camera", CAMERAS)
@pytest.mark.parametrize("inference_type", ["image2world", "video2world"])
def test_every_camera_needs_a_video_to_condition_on(camera, inference_type):
    data = {**CURRENT, "inference_type": inference_type}
    del data[camera]
    rejects(data, LABEL + f"field '{camera}.video_path' is required for {inference_type}")
    rejects({**data, camera: {"video_path": None}}, LABEL + f"field '{camera}.video_path' is required")


@pytest.mark.parametrize(
    "view, message",
    [
        ("clip.mp4", "field 'rear_left' must be a JSON object, got str 'clip.mp4'"),
        ({"video_path": 3}, "field 'rear_left.video_path' must be a string or null, got int 3"),
        ({"video_path": "/d/a.png"}, r"field 'rear_left.video_path' has extension '.png', which is not a video"),
        ({"video_path": "ftp://h/a.mp4"}, "field 'rear_left.video_path' has URL scheme 'ftp://', which is not"),
        (
            {"video_path": "/d/a.mp4", "control_path": "/d/c.mp4"},
            r"field 'rear_left.control_path' is not a known field \(known: video_path\)",
        ),
    ],
)
def test_invalid_camera(view, message):
    rejects({**CURRENT, "rear_left": view}, LABEL + message)


@pytest.mark.parametrize("field", BASE_ONLY_FIELDS)
def test_base_fields_are_refused(field):
    rejects({**CURRENT, field: 1}, LABEL + f"field '{field}' belongs to the base models' format")


def test_input_path_points_to_the_cameras():
    rejects({**CURRENT, "input_path": "/d/a.mp4"}, r'one video per camera, e.g. "front_wide": \{"video_path"')


@pytest.mark.parametrize("field", ["model", "context_parallel_size"])
def test_run_settings_are_refused(field):
    rejects({**CURRENT, field: 8}, f"field '{field}' is a run setting of the official CLI")


def test_missing_and_unknown_fields():
    rejects({key: value for key, value in CURRENT.items() if key != "prompt"}, r"field 'prompt' is required")
    rejects({**CURRENT, "prompt_text": "x"}, r"field 'prompt_text' is not a known field \(known: .*front_wide")
    rejects({key: value for key, value in CURRENT.items() if key != "inference_type"}, "'inference_type' is required")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n_views": 6}, "field 'n_views' must be 7: model 2B/auto/multiview generates the seven cameras"),
        ({"n_views": True}, "field 'n_views' must be 7"),
        ({"num_input_frames": 3}, r"field 'num_input_frames' must be 0, 1 or 2 .*got 3"),
        ({"num_input_frames": 1.0}, r"field 'num_input_frames' must be 0, 1 or 2 .*got 1.0"),
        ({"inference_type": "video2world"}, "field 'inference_type' is a field of the current multiview format"),
        ({"enable_autoregressive": True}, "field 'enable_autoregressive' is a field of the current multiview"),
    ],
)
def test_older_format_rejections(changes, message):
    rejects({**OLDER, **changes}, r"sample mv.json: " + message)


def test_empty_name():
    rejects({**CURRENT, "name": " "}, r"sample ' ' \(mv.json\): field 'name' must not be empty")


def test_errors_of_direct_construction_are_spec_errors():
    with pytest.raises(SpecError, match="sample 'a': field 'guidance' must be in 0..7"):
        MultiviewSpec(inference_type="text2world", name="a", prompt="p", guidance=9)


# --- the base format and the dispatch by model ------------------------------------------------------------


def test_field_lists_match_the_models():
    base, multiview = set(GenerationSpec.model_fields), set(MultiviewSpec.model_fields)
    assert set(BASE_ONLY_FIELDS) == base - multiview - {"negative_prompt", "enable_autoregressive"}
    assert set(MULTIVIEW_ONLY_FIELDS) == (multiview - base) | set(OLDER_FORMAT_FIELDS)


@pytest.mark.parametrize("field", MULTIVIEW_ONLY_FIELDS)
def test_base_format_points_multiview_fields_to_the_model(field):
    data = {"inference_type": "text2world", "name": "a", "prompt": "p", field: {"video_path": "/d/a.mp4"}}
    with pytest.raises(SpecError, match=f"field '{field}' belongs to the official multiview format.*{MULTIVIEW_MODEL}"):
        GenerationSpec.from_dict(data)


def test_parse_spec_dispatches_by_model():
    assert isinstance(parse_spec(CURRENT, model=MULTIVIEW_MODEL), MultiviewSpec)
    text = {"inference_type": "text2world", "name": "a", "prompt": "p"}
    assert isinstance(parse_spec(text, model="2B/post-trained"), GenerationSpec)
    with pytest.raises(SpecError, match="field 'front_wide' belongs to the official multiview format"):
        parse_spec(CURRENT, model="2B/post-trained")
    with pytest.raises(SpecError, match="field 'resolution' belongs to the base models' format"):
        parse_spec({**text, "resolution": "none"}, model=MULTIVIEW_MODEL)


# --- the published schema ---------------------------------------------------------------------------------


def test_published_schema_is_current():
    assert (ROOT / "docs" / "multiview_spec.schema.json").read_text(encoding="utf-8") == schema_json(MultiviewSpec)


def test_schema_accepts_both_official_formats():
    validator = jsonschema.Draft202012Validator(schema_of(MultiviewSpec))
    prompt_path = {"prompt_path": "urban_freeway.txt"}
    for sample in (CURRENT, OLDER, {**CURRENT, **prompt_path}, {**OLDER, **prompt_path, "n_views": 7}):
        validator.validate(sample)
    for sample in (
        {**CURRENT, "input_path": "/d/a.mp4"},
        {**CURRENT, "guidance": 8},
        {**CURRENT, "rear": {"control_path": "/d/a.mp4"}},
        {**OLDER, "inference_type": "video2world"},
        {**OLDER, "n_views": 6},
    ):
        assert not validator.is_valid(sample), sample


def test_schema_command_prints_the_model_format(capsys):
    spec_schema.main(["--model", MULTIVIEW_MODEL])
    assert capsys.readouterr().out == schema_json(MultiviewSpec)
