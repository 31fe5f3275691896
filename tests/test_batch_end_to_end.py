"""The batch job end to end on a local Ray with logical GPUs and the tiny preset, everything in S3.

One run over S3 (moto server): manifest, input media and outputs all in a bucket, 2 groups of 2 ranks, rows of
all three types plus an invalid row and a sample whose input is missing. And a sample whose outputs cannot be
written failing alone. (A job killed midway and resumed: test_batch_resume.py.)
"""

import json
import tempfile

import fsspec
import imageio_ffmpeg
import numpy as np
import pyarrow as pa
import pytest

from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.outputs import OutputStore
from cosmos_ray.core.storage import Storage
from pipelines.batch import GENERATED_SCHEMA, BatchConfig, run, write_outputs
from pipelines.group import GroupConfig
from tests.batch_helpers import REPO, live_placement_groups, manifest_row, spec, write_manifest
from tests.media_helpers import png_header

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it

MEDIA = REPO / "examples" / "media"
TINY_HW = (64, 96)
LONG_VIDEO = {
    "enable_autoregressive": True,
    "num_output_frames": 17,
    "chunk_size": 9,
    "chunk_overlap": 1,
    "cosmos_ray_num_frames": None,  # the length is num_output_frames
}


def decode(data: bytes) -> tuple[int, tuple[int, int], float]:
    """(frame count, (width, height), fps) of mp4 bytes, by ffmpeg."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as video:
        video.write(data)
        video.flush()
        reader = imageio_ffmpeg.read_frames(video.name)
        info = next(reader)
        return sum(1 for _ in reader), tuple(info["size"]), info["fps"]


@pytest.fixture(scope="module")
def s3_job(ray_session, s3_endpoint):
    options = s3_endpoint.storage_options
    bucket = s3_endpoint.bucket("batch-job")
    fs = fsspec.filesystem("s3", **options)
    fs.put(str(MEDIA / "square.png"), f"{bucket}/media/square.png")
    fs.put(str(MEDIA / "square.mp4"), f"{bucket}/media/square.mp4")
    fs.pipe(f"{bucket}/media/bomb.png", png_header(12000, 12000))  # refused from its header (MediaLimits)
    image, video = f"{bucket}/media/square.png", f"{bucket}/media/square.mp4"
    specs = [
        spec("t2w-plain", seed=1),
        spec("t2w-24fps-small", seed=2, fps=24, resolution="48,64"),
        spec("t2w-guided", seed=3, guidance=7),
        spec("t2w-same-prompt", seed=4, guidance=0),
        spec("i2w-a", "image2world", input_path=image),
        spec("i2w-square", "image2world", input_path=image, resolution="64,64"),
        spec("i2w-short", "image2world", input_path=image, cosmos_ray_num_frames=5),
        spec("v2w-a", "video2world", input_path=video),
        spec("v2w-one-latent", "video2world", input_path=video, num_conditional_frames=1),
        spec("v2w-12fps-native", "video2world", input_path=video, fps=12, cosmos_ray_num_frames=None),  # 93 frames
        spec("v2w-long", "video2world", input_path=video, resolution="32,32", **LONG_VIDEO),  # two windows
        spec("bad-guidance", guidance=9),  # invalid: rejected by the check stage, no GPU time
        spec("missing-input", "image2world", input_path=f"{bucket}/media/missing.png"),  # fails in its group
        spec("bomb-input", "image2world", input_path=f"{bucket}/media/bomb.png"),  # too many pixels: fails there
    ]
    manifest = f"{bucket}/manifests/run.parquet"
    write_manifest(manifest, [manifest_row(data, f"specs.jsonl:{i + 1}") for i, data in enumerate(specs)], options)
    config = BatchConfig(
        manifest=manifest,
        output=f"{bucket}/out",
        groups=2,
        group=GroupConfig(gpus_per_group=2, engine=EngineOptions(storage=Storage(options))),
    )
    summary = run(config)
    return {"specs": specs, "summary": summary, "store": OutputStore(config.output, Storage(options)), "fs": fs}


def test_every_valid_row_is_generated_and_bad_rows_are_reported(s3_job):
    summary = s3_job["summary"]
    assert (summary.ok, summary.failed, summary.skipped) == (11, 3, 0)
    assert summary.gpus == 4
    assert summary.videos_per_hour > 0


def test_the_run_table_has_every_row_in_manifest_order(s3_job):
    table = s3_job["store"].read_run_table(s3_job["summary"].run_id)
    assert [record.source for record in table] == [f"specs.jsonl:{i + 1}" for i in range(14)]
    assert [record.status for record in table] == ["ok"] * 11 + ["failed"] * 3
    invalid, missing, bomb = table[11], table[12], table[13]
    assert invalid.sample_id is None and "bad-guidance" in invalid.error and "'guidance'" in invalid.error
    assert missing.sample_id is not None and "MediaError" in missing.error and "missing.png" in missing.error
    assert "MediaError" in bomb.error and "12000x12000 pixels (144000000), more than the 33177600" in bomb.error


def test_videos_decode_with_the_frame_count_size_and_fps_of_their_spec(s3_job):
    table = s3_job["store"].read_run_table(s3_job["summary"].run_id)
    for record, data in zip(table[:11], s3_job["specs"]):
        frames, size, fps = decode(s3_job["fs"].cat_file(record.video_url))
        height, width = map(int, data["resolution"].split(",")) if "resolution" in data else TINY_HW
        expected_frames = (  # autoregressive: num_output_frames; else null means the model's native 93 frames
            data["num_output_frames"] if data.get("enable_autoregressive") else data["cosmos_ray_num_frames"] or 93
        )
        assert (frames, size, fps) == (expected_frames, (width, height), data.get("fps", 16)), data["name"]


def test_each_sample_has_a_committed_record_with_its_metadata(s3_job):
    store, summary = s3_job["store"], s3_job["summary"]
    for data in s3_job["specs"][:11]:
        record = store.read_record(run_table_id(s3_job, data["name"]))
        assert record.status == "ok"
        metadata = record.metadata
        assert metadata["run_id"] == summary.run_id
        assert metadata["seed"] == data.get("seed", 0) and metadata["world_size"] == 2
        assert {"sampling", "decode", "group_call", "mp4_encode"} <= set(metadata["timings_s"])
        assert len(metadata.get("chunks", [])) == (2 if data.get("enable_autoregressive") else 0)
    failed = store.read_record(run_table_id(s3_job, "missing-input"))
    assert failed.status == "failed" and "MediaError" in failed.error


def run_table_id(job: dict, name: str) -> str:
    (record,) = [r for r in job["store"].read_run_table(job["summary"].run_id) if r.name == name]
    return record.sample_id


def test_the_groups_placement_groups_are_released(s3_job):
    assert live_placement_groups(f"cosmos-ray-{s3_job['summary'].run_id}-") == []


def test_a_sample_whose_outputs_cannot_be_written_fails_alone(s3_endpoint):
    frames = np.zeros((1, 16, 16, 3), np.uint8)
    row = {
        "row": 3,
        "source": "specs.jsonl:4",
        "spec_json": json.dumps(spec("unwritable")),
        "error": None,
        "frames": frames.tobytes(),
        "frames_shape": list(frames.shape),
        "fps": 16,
        "metadata_json": json.dumps({"seed": 0}),
        "generate_s": 1.0,
    }
    written = write_outputs(
        pa.Table.from_pylist([row], schema=GENERATED_SCHEMA),
        run_id="r",
        model="2B/post-trained",
        output="s3://no-such-bucket/out",
        storage=Storage(s3_endpoint.storage_options),
    )
    (record,) = written.to_pylist()
    assert (record["row"], record["status"], record["source"]) == (3, "failed", "specs.jsonl:4")
    assert record["error"].startswith("writing the outputs failed") and "unwritable" in record["sample_id"]
