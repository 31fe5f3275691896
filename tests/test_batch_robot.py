"""The batch job with the robot models on a local Ray (logical GPUs, tiny preset), from official input files through
`jobs.make_manifest --model` to the outputs training reads:

- `2B/robot/action-cond`: the official folder spec (one manifest row per episode), run by two groups of one rank
  sharing one GPU (`gpus_per_rank` 0.5, the other GPUs held); each episode's mp4, its actions in the record, the run
  table and the shard; an episode whose annotation broke after the manifest was made fails alone in the check stage,
  its error naming the episode, the field and the frame;
- `2B/robot/multiview-agibot`: a scene's stacked mp4 and one mp4 per view, its cameras in the record and the shard; a
  scene with a broken camera file fails alone, naming the file, the line and the latent frame."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import ray

from cosmos_ray.core.action_spec import ACTION_MODEL
from cosmos_ray.core.agibot_spec import AGIBOT_MODEL, FRAMES_PER_VIEW, VIEWS
from cosmos_ray.core.media import read_video
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.outputs import FAILED, OK, OutputStore
from cosmos_ray.core.shards import ShardStore
from jobs import make_manifest
from pipelines.batch import BatchConfig, Summary, run
from pipelines.batch.sinks import SinkConfig
from pipelines.group import GroupConfig
from tests.conftest import RAY_LOGICAL_GPUS
from tests.robot_helpers import ANNOTATION_FOLDER, break_state, write_episode, write_scene

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it

EPISODE_FRAMES = 16  # 15 actions: chunks of 12 at actions 0 and 12, 13 + 12 frames
EPISODE_VIDEO_FRAMES = 25


def manifest_of(folder: Path, spec_files: list[Path], model: str) -> Path:
    """The manifest `python -m jobs.make_manifest --model` makes of official spec files (their inputs checked)."""
    manifest = folder / "manifest.parquet"
    assert make_manifest.main([*map(str, spec_files), "-o", str(manifest), "--model", model]) == 0
    return manifest


def run_job(manifest: Path, output: Path, group: GroupConfig, groups: int = 1) -> Summary:
    config = BatchConfig(
        manifest=str(manifest), output=str(output), groups=groups, group=group, sinks=(SinkConfig("webdataset"),)
    )
    return run(config)


def shard_records(store: OutputStore) -> dict[str, dict]:
    """Each sample's record as its shard holds it, by sample id."""
    records = {}
    for row in ShardStore(store).read_index().to_pylist():
        with tarfile.open(Path(store.root_url) / "shards" / row["shard"]) as tar:
            record = json.load(tar.extractfile(f"{row['key']}.json"))  # type: ignore[arg-type]
        records[record["sample_id"]] = record
    return records


@pytest.fixture(scope="module")
def action_job(ray_session, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bridge")
    for number, episode in enumerate(("0", "1", "2")):
        write_episode(folder, episode, num_frames=EPISODE_FRAMES, seed=number)
    spec_file = folder / "inference_params.json"  # the official spec: a folder of episodes
    official = {"name": "bridge", "input_root": ".", "input_json_sub_folder": ANNOTATION_FOLDER, "start": 0, "end": 100}
    spec_file.write_text(json.dumps({**official, "num_steps": 1, "guidance": 0}))
    manifest = manifest_of(folder, [spec_file], ACTION_MODEL)
    break_state(folder / ANNOTATION_FOLDER / "1.json", frame=5)  # after its manifest row was made
    # every GPU but one is held: the two groups of one rank can only run by sharing it
    holder = ray.util.placement_group([{"GPU": 1}] * (RAY_LOGICAL_GPUS - 1))
    ray.get(holder.ready())
    try:
        group = GroupConfig(gpus_per_group=1, gpus_per_rank=0.5, engine=EngineOptions(model=ACTION_MODEL))
        summary = run_job(manifest, folder / "out", group, groups=2)
    finally:
        ray.util.remove_placement_group(holder)
    return summary, OutputStore(str(folder / "out")), folder


def test_each_episode_is_a_row_and_its_video_and_actions_are_written(action_job):
    summary, store, _ = action_job
    assert (summary.ok, summary.failed, summary.gpus) == (2, 1, 1.0)  # two groups of half a GPU each
    records = {record.name: record for record in store.read_run_table(summary.run_id)}
    assert sorted(records) == ["bridge/0", "bridge/1", "bridge/2"]
    shards = shard_records(store)
    for name in ("bridge/0", "bridge/2"):
        record = records[name]
        assert record.status == OK and record.views == []
        assert read_video(record.video_url).shape == (EPISODE_VIDEO_FRAMES, 32, 48, 3)
        assert len(record.metadata["actions"]) == EPISODE_FRAMES - 1 and len(record.metadata["actions"][0]) == 7
        assert [chunk["actions"] for chunk in record.metadata["chunks"]] == [[0, 12], [12, 15]]
        assert shards[record.sample_id]["metadata"]["actions"] == record.metadata["actions"]


def test_an_episode_with_a_malformed_state_fails_alone_naming_episode_field_and_frame(action_job):
    summary, store, folder = action_job
    (bad,) = [record for record in store.read_run_table(summary.run_id) if record.status == FAILED]
    assert bad.name == "bridge/1" and bad.sample_id is None and bad.source.endswith(f"{ANNOTATION_FOLDER}/1.json")
    annotation = folder / ANNOTATION_FOLDER / "1.json"
    assert f"sample 'bridge/1': episode {annotation}: field 'state', frame 5: must be a list of" in bad.error


@pytest.fixture(scope="module")
def agibot_job(ray_session, tmp_path_factory):
    folder = tmp_path_factory.mktemp("agibot")
    good = write_scene(folder / "towel", 3, name="towel", num_steps=1)
    bad = write_scene(folder / "broken", 5, name="broken", num_steps=1)
    manifest = manifest_of(folder, [good, bad], AGIBOT_MODEL)
    camera = folder / "broken" / "cameras" / "5_extrinsic_hand_0.txt"
    lines = camera.read_text().splitlines()
    camera.write_text("\n".join([*lines[:3], "2 0 0 0 0 1 0 0 0 0 1 0", *lines[4:]]))
    summary = run_job(manifest, folder / "out", GroupConfig(engine=EngineOptions(model=AGIBOT_MODEL)))
    return summary, OutputStore(str(folder / "out"))


def test_a_scene_gets_its_stacked_mp4_one_per_view_and_its_cameras(agibot_job):
    summary, store = agibot_job
    assert (summary.ok, summary.failed) == (1, 1)
    ok, broken = store.read_run_table(summary.run_id)
    assert ok.status == OK and ok.name == "towel"
    stacked = read_video(ok.video_url)
    assert stacked.shape == (FRAMES_PER_VIEW, len(VIEWS) * 64, 96, 3)
    assert ok.view_urls == [store.view_url(ok.sample_id, view) for view in VIEWS]
    for url in ok.view_urls:
        assert read_video(url).shape == (FRAMES_PER_VIEW, 64, 96, 3)
    cameras = ok.metadata["cameras"]
    assert sorted(cameras) == sorted(VIEWS) and len(cameras["hand_0"]["extrinsics_camera_to_world"]) == 24
    shard = shard_records(store)[ok.sample_id]
    assert shard["metadata"]["cameras"] == cameras and [view["view"] for view in shard["views"]] == list(VIEWS)
    assert broken.status == FAILED and broken.sample_id is None
    assert "sample 'broken': field 'cameras/extrinsic_hand_0' " in broken.error
    assert "5_extrinsic_hand_0.txt line 4 (latent frame 3): R has determinant 2" in broken.error
