"""GenerationSpec as it accepts a sample: official defaults, every field kept, autoregressive fields, input and
prompt paths, sample_id, and num_generations (ours). (Rejections: test_spec_rejections.py; the published JSON
Schema: test_spec_schema.py.)"""

import os

import pytest
from pydantic import ValidationError

from cosmos_ray.core.spec import DEFAULT_NEGATIVE_PROMPT, GenerationSpec, SpecError
from cosmos_ray.core.spec_base import safe_name
from cosmos_ray.core.spec_rules import count_chunks
from tests.spec_helpers import IMAGE, LABEL, TEXT, VIDEO, parse, rejects


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


def test_sample_id_does_not_depend_on_where_a_local_input_lives(tmp_path):
    """The same specs and inputs in two checkouts (or after a move) keep their ids; another input changes it."""
    ids = []
    for checkout in ("a", "b/deeper"):
        folder = tmp_path / checkout / "examples"
        folder.mkdir(parents=True)
        (folder / "frame.png").write_bytes(b"the same image")
        data = {"inference_type": "image2world", "name": "i", "prompt": "p", "input_path": "frame.png"}
        spec = GenerationSpec.from_dict(data, base_dir=str(folder))
        assert spec.input_path == str(folder / "frame.png")  # the spec still reads its own copy
        ids.append(spec.sample_id)
        file_url = GenerationSpec.from_dict({**data, "input_path": f"file://{folder}/frame.png"})
        ids.append(file_url.sample_id)
    assert len(set(ids)) == 1
    (tmp_path / "a" / "examples" / "frame.png").write_bytes(b"another image")
    data = {"inference_type": "image2world", "name": "i", "prompt": "p", "input_path": "frame.png"}
    assert GenerationSpec.from_dict(data, base_dir=str(tmp_path / "a" / "examples")).sample_id != ids[0]
    missing = GenerationSpec.from_dict(data, base_dir=str(tmp_path / "nowhere"))  # still has an id (by its path)
    assert missing.sample_id != ids[0]
    remote = [GenerationSpec.from_dict({**data, "input_path": f"s3://b/{k}/frame.png"}).sample_id for k in "xy"]
    assert remote[0] != remote[1]  # a URL is global: it counts as written


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


def test_an_empty_prompt_is_accepted_as_the_official_inference_accepts_it(tmp_path):
    """`InferenceArguments.prompt: str` has no minimum length, and an empty prompt file stays "" (cosmos_predict2/
    config.py at 7e5ffc83; docs/reference-notes.md)."""
    assert GenerationSpec.from_dict({**TEXT, "prompt": ""}).prompt == ""
    (tmp_path / "empty.txt").write_text("\n  \n")
    data = {key: value for key, value in TEXT.items() if key != "prompt"}
    assert GenerationSpec.from_dict({**data, "prompt_path": "empty.txt"}, base_dir=str(tmp_path)).prompt == ""
