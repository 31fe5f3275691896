"""The robot models' specs as manifest rows (`jobs.make_manifest --model`): the official action-conditioned spec of a
folder of episodes expanded into one row per episode, through `Storage` (local or any fsspec URL); the small input
files (an episode's annotation, a scene's camera files) checked by the manifest maker and the batch job's check
stage, with errors that name the episode or scene, the file, the field and the frame."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest

from cosmos_ray.core.action_spec import ACTION_MODEL, episode_specs
from cosmos_ray.core.agibot_spec import AGIBOT_MODEL
from cosmos_ray.core.limits import SpecLimits
from cosmos_ray.core.manifest import ManifestError, make_manifest, read_manifest
from cosmos_ray.core.storage import Storage
from jobs import make_manifest as make_manifest_cli
from pipelines.batch import check_rows
from tests.batch_helpers import manifest_row
from tests.robot_helpers import ANNOTATION_FOLDER, break_state, write_episode, write_scene

EPISODES = ("0", "11", "3")
OF = "of the folder's)"


def official_spec(root: Path, **fields) -> Path:
    """The official folder spec (`inference_params.json` of the official example), beside the episodes."""
    for number, episode in enumerate(EPISODES):
        write_episode(root, episode, seed=number)
    data = {"name": "bridge", "input_root": ".", "input_json_sub_folder": ANNOTATION_FOLDER, "num_steps": 2, **fields}
    path = root / "inference_params.json"
    path.write_text(json.dumps(data))
    return path


def test_the_official_folder_spec_becomes_one_row_per_episode(tmp_path, capsys):
    spec_file = official_spec(tmp_path / "bridge", start=0, end=100, save_root="results/action2world")
    output = tmp_path / "episodes.parquet"
    argv = [str(spec_file), "-o", str(output), "--model", ACTION_MODEL]
    assert make_manifest_cli.main(argv) == 0
    assert "wrote 3 spec(s)" in capsys.readouterr().out
    rows = read_manifest(str(output))
    # sorted by file name (the official glob's order is the file system's); names as the official outputs'
    assert [row["name"] for row in rows] == ["bridge/0", "bridge/11", "bridge/3"]
    assert [row["source"] for row in rows] == [f"{spec_file}:{ANNOTATION_FOLDER}/{e}.json" for e in EPISODES]
    specs = [json.loads(row["spec_json"]) for row in rows]
    assert [spec["cosmos_ray_annotation"] for spec in specs] == [f"{e}.json" for e in EPISODES]
    assert all(spec["input_root"] == str(tmp_path / "bridge") and spec["num_steps"] == 2 for spec in specs)
    assert not {"start", "end", "save_root"} & set(specs[0])  # read by nothing per episode: not in the row's spec


@pytest.mark.parametrize(
    ("start", "end", "episodes"),
    [(1, 2, ["11"]), (-1, 100, ["3"]), (0, -1, ["0", "11"]), (2, 1000, ["3"])],
)
def test_start_and_end_slice_the_sorted_annotations_as_official(tmp_path, start, end, episodes):
    official_spec(tmp_path, start=start, end=end)
    specs = make_manifest([str(tmp_path / "inference_params.json")], str(tmp_path / "m.parquet"), model=ACTION_MODEL)
    assert [spec.name for spec in specs] == [f"bridge/{episode}" for episode in episodes]


def test_a_spec_naming_its_annotation_stays_one_row(tmp_path):
    official_spec(tmp_path)
    data = {**json.loads((tmp_path / "inference_params.json").read_text()), "cosmos_ray_annotation": "11.json"}
    assert episode_specs(data, source="s.json", base_dir=str(tmp_path), storage=Storage()) == [(data, "s.json")]


def test_expansion_errors_name_the_spec_file_and_field(tmp_path):
    spec_file = official_spec(tmp_path / "a", start=3)
    empty = tmp_path / "b" / "empty.json"
    empty.parent.mkdir()
    empty.write_text(json.dumps({"name": "none", "input_root": ".", "input_json_sub_folder": "annotation/test"}))
    text = tmp_path / "c.json"
    text.write_text(
        json.dumps(
            {"name": "c", "input_root": str(tmp_path / "a"), "input_json_sub_folder": ANNOTATION_FOLDER, "end": "2"}
        )
    )
    with pytest.raises(ManifestError) as caught:
        make_manifest([str(spec_file), str(empty), str(text)], str(tmp_path / "m.parquet"), model=ACTION_MODEL)
    first, second, third = caught.value.problems
    assert first.startswith(f"sample 'bridge' ({spec_file}): field 'start' start 3 and end 100 select none of the 3")
    assert f"sample 'none' ({empty}): field 'input_json_sub_folder' no annotation files (*.json) in " in second
    assert third == f"sample 'c' ({text}): field 'end' must be an integer (the episodes are [start:end] {OF}, got '2'"
    assert not (tmp_path / "m.parquet").exists()


def test_episodes_on_any_fsspec_store(tmp_path):
    local = tmp_path / "bridge"
    official_spec(local)
    memory = fsspec.filesystem("memory")
    for path in local.rglob("*"):
        if path.is_file():
            memory.pipe(f"/robotpipe/bridge/{path.relative_to(local)}", path.read_bytes())
    data = {"name": "remote", "input_root": "memory://robotpipe/bridge", "input_json_sub_folder": ANNOTATION_FOLDER}
    memory.pipe("/robotpipe/specs/params.json", json.dumps(data).encode())
    specs = make_manifest(["memory://robotpipe/specs/*.json"], "memory://robotpipe/m.parquet", model=ACTION_MODEL)
    assert [spec.input_urls()["cosmos_ray_annotation"] for spec in specs] == [
        f"memory://robotpipe/bridge/{ANNOTATION_FOLDER}/{episode}.json" for episode in EPISODES
    ]


def test_a_malformed_annotation_is_a_manifest_problem_naming_episode_field_and_frame(tmp_path):
    spec_file = official_spec(tmp_path)
    break_state(tmp_path / ANNOTATION_FOLDER / "11.json", frame=4)
    with pytest.raises(ManifestError) as caught:
        make_manifest([str(spec_file)], str(tmp_path / "m.parquet"), model=ACTION_MODEL)
    (problem,) = caught.value.problems
    assert problem.startswith(
        f"sample 'bridge/11': episode {tmp_path / ANNOTATION_FOLDER / '11.json'}: field 'state', frame 4:"
    )
    assert problem.endswith(f"({spec_file}:{ANNOTATION_FOLDER}/11.json)")
    specs = make_manifest([str(spec_file)], str(tmp_path / "m.parquet"), model=ACTION_MODEL, check_inputs=False)
    assert len(specs) == 3  # --no-check-inputs reads no annotation


def test_a_malformed_camera_file_is_a_manifest_problem_naming_scene_file_and_line(tmp_path):
    spec_file = write_scene(tmp_path)
    camera = tmp_path / "cameras" / "3_intrinsic_hand_1.txt"
    lines = camera.read_text().splitlines()
    camera.write_text("\n".join([*lines[:7], "1 2 3", *lines[8:]]))
    expected = r"3_intrinsic_hand_1.txt line 8 \(latent frame 7\): 3 numbers, expected 4"
    with pytest.raises(ManifestError, match=r"sample 'scene': field 'cameras/intrinsic_hand_1' .*" + expected):
        make_manifest([str(spec_file)], str(tmp_path / "m.parquet"), model=AGIBOT_MODEL)


def test_the_check_stage_refuses_rows_whose_small_input_files_are_bad(tmp_path):
    """Rows made while the files were good; the files changed before the job: invalid rows, no GPU spent."""
    episode_file = official_spec(tmp_path / "bridge")
    scene_file = write_scene(tmp_path / "scene")
    episodes = make_manifest([str(episode_file)], str(tmp_path / "e.parquet"), model=ACTION_MODEL)
    (scene,) = make_manifest([str(scene_file)], str(tmp_path / "s.parquet"), model=AGIBOT_MODEL)
    (tmp_path / "bridge" / ANNOTATION_FOLDER / "0.json").write_text("{not json")
    break_state(tmp_path / "bridge" / ANNOTATION_FOLDER / "3.json", frame=2)
    (tmp_path / "scene" / "cameras" / "3_extrinsic_head.txt").unlink()

    def check(specs, model):
        rows = [manifest_row(spec.to_json(), f"m:{index}") for index, spec in enumerate(specs)]
        batch = pa.Table.from_pylist(rows).select(["spec_json", "name", "source"])
        run = partial(check_rows, output=str(tmp_path / "out"), storage=Storage(), limits=SpecLimits())
        return run(batch, model=model).to_pylist()

    bad_json, good, bad_state = check(episodes, ACTION_MODEL)
    assert [row["status"] for row in (bad_json, good, bad_state)] == ["invalid", "pending", "invalid"]
    assert "sample 'bridge/0': episode " in bad_json["error"] and "the annotation is not JSON" in bad_json["error"]
    assert (
        "sample 'bridge/3': episode " in bad_state["error"] and "field 'state', frame 2: must be" in bad_state["error"]
    )
    (missing,) = check([scene], AGIBOT_MODEL)
    assert missing["status"] == "invalid" and missing["sample_id"] is None
    assert (
        "field 'cameras/extrinsic_head' cannot read " in missing["error"] and "3_extrinsic_head.txt" in missing["error"]
    )


def test_an_object_the_expansion_cannot_read_goes_to_the_parser(tmp_path):
    data = {"name": "x", "input_json_sub_folder": ANNOTATION_FOLDER}
    assert episode_specs(data, source="s", base_dir=str(tmp_path), storage=Storage()) == [(data, "s")]
    (tmp_path / "spec.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="sample 'x' .*: field 'input_root' is required"):
        make_manifest([str(tmp_path / "spec.json")], str(tmp_path / "m.parquet"), model=ACTION_MODEL)
