"""The action-conditioned robot model `2B/robot/action-cond` on the tiny preset: its spec format, episodes read
from the official annotation layout (written by `tests/robot_helpers.py`), the engine's rollout and the local CLI.
The rollout's bookkeeping against the official script is tests/test_official_robot_rollout.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cosmos_ray.core.action_spec import ACTION_MODEL, ActionSpec
from cosmos_ray.core.media import read_video
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.outputs import OK, OutputStore
from cosmos_ray.core.robot_episode import EpisodeError, read_episode
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.core.spec_formats import parse_spec
from cosmos_ray.families import load_engine
from cosmos_ray.models.action_dit import ActionDiT
from cosmos_ray.robot_action import ActionEngine
from jobs import local
from tests.robot_helpers import ANNOTATION_FOLDER, write_episode


@pytest.fixture(scope="module")
def engine() -> ActionEngine:
    built = load_engine(EngineOptions(source="tiny", model=ACTION_MODEL), device="cpu")
    assert isinstance(built, ActionEngine) and isinstance(built.generator.dit, ActionDiT)
    assert built.generator.info.state_t == 4 and built.generator.info.model.sampler_recipe == "pre-trained"
    return built


def test_a_row_is_one_episode_in_the_official_format(tmp_path):
    fields = write_episode(tmp_path / "data")
    spec = parse_spec(fields, model=ACTION_MODEL)
    assert isinstance(spec, ActionSpec)
    assert spec.annotation_url == str(tmp_path / "data" / ANNOTATION_FOLDER / "0.json")
    assert (spec.chunk_size, spec.guidance, spec.save_fps, spec.fps) == (12, 0, 20, 20)  # guidance: the helper's 0
    assert ActionSpec.from_dict(json.loads(spec.to_json())) == spec
    # the folder-level official fields are checked, then left out of the JSON and the id
    other = parse_spec({**fields, "start": 3, "end": 7, "save_root": "x", "reverse": True}, model=ACTION_MODEL)
    assert other.sample_id == spec.sample_id and "end" not in other.to_dict()
    # the annotation counts by its content: a copy elsewhere keeps the id, another episode does not
    moved = write_episode(tmp_path / "copy")
    assert parse_spec(moved, model=ACTION_MODEL).sample_id == spec.sample_id
    assert parse_spec(write_episode(tmp_path / "b", seed=1), model=ACTION_MODEL).sample_id != spec.sample_id
    assert [g.seed for g in spec.model_copy(update={"num_generations": 3}).generations()] == [0, 1, 2]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("use_quat", True, "7 values per action"),
        ("chunk_size", 10, "multiple of 4"),
        ("action_load_fn", "my.loader", "imports no code"),
        ("input_path", "a.mp4", "base models' format"),
        ("num_latent_conditional_frames", 3, "must be in 0..2"),
        ("cosmos_ray_annotation", "0.txt", ".json"),
    ],
)
def test_the_spec_refuses_what_the_model_cannot_run(tmp_path, field, value, words):
    fields = {**write_episode(tmp_path), field: value}
    with pytest.raises(SpecError, match=field) as error:
        parse_spec(fields, model=ACTION_MODEL)
    assert words in str(error.value) and "episode-0" in str(error.value)


def test_episode_errors_name_the_episode_the_field_and_the_frame(tmp_path):
    fields = write_episode(tmp_path)
    path = tmp_path / ANNOTATION_FOLDER / "0.json"
    annotation = json.loads(path.read_text())
    annotation["state"][3] = [0.1, 0.2]
    path.write_text(json.dumps(annotation))
    with pytest.raises(EpisodeError, match=r"0\.json: field 'state', frame 3: must be a list of at least 6"):
        read_episode(ActionSpec.from_dict(fields))
    annotation["state"][3] = annotation["state"][2]
    annotation["videos"] = []
    path.write_text(json.dumps(annotation))
    with pytest.raises(EpisodeError, match="field 'videos' must be a non-empty list"):
        read_episode(ActionSpec.from_dict(fields))
    write_episode(tmp_path)
    with pytest.raises(EpisodeError, match="start_frame_idx 40 leaves none"):
        read_episode(ActionSpec.from_dict({**fields, "start_frame_idx": 40}))


def test_the_rollout_is_conditioned_on_the_episode_and_its_actions(engine, tmp_path):
    fields = write_episode(tmp_path / "a", num_frames=8)  # 7 actions: one chunk, padded
    result = engine(ActionSpec.from_dict(fields))
    assert result.frames.shape == (13, 32, 48, 3) and result.fps == 20
    assert result.metadata["chunks"] == [{"chunk": 0, "seed": 0, "actions": [0, 7], "frames": [0, 13]}]
    assert np.array(result.metadata["actions"]).shape == (7, 7)
    assert result.metadata["model"] == ACTION_MODEL
    # other actions (same start frame, other states) change the video; so does the seed
    path = tmp_path / "a" / ANNOTATION_FOLDER / "0.json"
    annotation = json.loads(path.read_text())
    annotation["state"] = [[x + 0.05 * k for x in state] for k, state in enumerate(annotation["state"])]
    path.write_text(json.dumps(annotation))
    moved = engine(ActionSpec.from_dict(fields))
    assert not np.array_equal(moved.frames, result.frames)
    assert not np.array_equal(engine(ActionSpec.from_dict({**fields, "seed": 1})).frames, moved.frames)


def test_the_engine_refuses_another_format(engine):
    base = GenerationSpec.from_dict({"inference_type": "text2world", "name": "x", "prompt": "p"})
    with pytest.raises(TypeError, match="reads ActionSpec specs"):
        engine(base)


def test_the_local_cli_writes_the_rollout_and_its_actions(tmp_path):
    fields = write_episode(tmp_path / "data", num_frames=16)  # 15 actions: chunks of 12 and 3 (padded)
    path = tmp_path / "episode.json"
    path.write_text(json.dumps(fields))
    out = tmp_path / "out"
    argv = ["-i", str(path), "-o", str(out), "--preset", "tiny", "--model", ACTION_MODEL, "--device", "cpu"]
    assert local.main(argv) == 0
    store = OutputStore(str(out))
    sample_id = ActionSpec.from_dict(fields).sample_id
    record = store.read_record(sample_id)
    assert record is not None and record.status == OK
    assert [chunk["seed"] for chunk in record.metadata["chunks"]] == [0, 12]
    assert len(record.metadata["actions"]) == 15
    assert read_video(store.video_url(sample_id)).shape == (13 + 12, 32, 48, 3)
