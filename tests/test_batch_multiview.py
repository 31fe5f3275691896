"""The batch job with the 7-camera model on a local Ray (logical GPUs, tiny preset): a manifest of official
multiview specs becomes the stacked mp4 and one mp4 per camera, listed in the records, the run table and the
shards; a row in the base format is refused by the check stage with the field and the model to run it with."""

import pytest

from cosmos_ray.core.media import read_video
from cosmos_ray.core.multiview_spec import CAMERAS, FRAMES_PER_VIEW, MULTIVIEW_MODEL, MultiviewSpec
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.outputs import FAILED, OK, OutputStore
from cosmos_ray.core.shards import ShardStore
from pipelines.batch import BatchConfig, run
from pipelines.batch.sinks import SinkConfig
from pipelines.group import GroupConfig
from tests.batch_helpers import manifest_row, write_manifest

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it

DRIVE = {"inference_type": "text2world", "name": "drive", "prompt": "A car on a road.", "num_steps": 1}
BASE_ROW = {"inference_type": "text2world", "name": "square", "prompt": "A square.", "cosmos_ray_num_frames": 9}


@pytest.fixture(scope="module")
def multiview_job(ray_session, tmp_path_factory):
    folder = tmp_path_factory.mktemp("multiview")
    manifest = str(folder / "drives.parquet")
    write_manifest(manifest, [manifest_row(DRIVE, "drives.jsonl:1"), manifest_row(BASE_ROW, "drives.jsonl:2")])
    config = BatchConfig(
        manifest=manifest,
        output=str(folder / "out"),
        groups=1,
        group=GroupConfig(gpus_per_group=1, engine=EngineOptions(model=MULTIVIEW_MODEL)),
        sinks=(SinkConfig("webdataset"),),
    )
    summary = run(config)
    return summary, OutputStore(config.output)


def test_each_camera_gets_its_mp4_beside_the_stacked_one(multiview_job):
    summary, store = multiview_job
    assert (summary.ok, summary.failed) == (1, 1)
    sample_id = MultiviewSpec.from_dict(DRIVE).sample_id
    record = store.read_record(sample_id)
    assert record is not None and record.status == OK
    assert [view["view"] for view in record.views] == list(CAMERAS)
    stacked = read_video(store.video_url(sample_id))
    assert stacked.shape[0] == len(CAMERAS) * FRAMES_PER_VIEW
    for camera in CAMERAS:
        assert read_video(store.view_url(sample_id, camera)).shape == (FRAMES_PER_VIEW, *stacked.shape[1:])


def test_the_run_table_lists_the_views_and_the_refused_base_row(multiview_job):
    summary, store = multiview_job
    ok, refused = store.read_run_table(summary.run_id)
    assert ok.status == OK and ok.view_urls == [store.view_url(ok.sample_id, camera) for camera in CAMERAS]
    assert [view["camera"] for view in ok.metadata["views"]] == list(CAMERAS)  # the engine's cuts, kept
    assert refused.status == FAILED and refused.sample_id is None
    assert "field 'cosmos_ray_num_frames'" in refused.error and MULTIVIEW_MODEL in refused.error


def test_the_shard_holds_the_sample_with_its_views(multiview_job):
    _, store = multiview_job
    (row,) = ShardStore(store).read_index().to_pylist()
    assert [view["view"] for view in row["views"]] == list(CAMERAS)
