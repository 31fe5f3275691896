"""The batch job end to end on a local Ray with logical GPUs and the tiny preset.

One run over S3 (moto server): manifest, input media and outputs all in a bucket, 2 groups of 2 ranks, rows of
all three types plus an invalid row and a sample whose input is missing. Then, on local paths, a job killed
midway (SIGKILL to its driver process) and resumed.
"""

import dataclasses
import io
import json
import logging
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import fsspec
import imageio_ffmpeg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import requests
from prometheus_client.parser import text_string_to_metric_families

from cosmos_ray.core.guardrails import GuardrailSetting
from cosmos_ray.core.limits import SpecLimits
from cosmos_ray.core.manifest import MANIFEST_SCHEMA
from cosmos_ray.core.offload_config import OffloadConfig
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.outputs import OutputRecord, OutputStore
from cosmos_ray.core.shards import ShardConfig, ShardStore
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.storage import Storage
from jobs.generate import main as generate_main
from jobs.generate import parse_args
from pipelines import placement
from pipelines.batch import GENERATED_SCHEMA, BatchConfig, WebDatasetSink, check_rows, run, write_outputs
from pipelines.batch.sinks import GeneratedSample, RunInfo, Sink, SinkConfig, register_sink
from pipelines.group import GroupConfig
from tests.guardrail_standin import GREY, StandInGuardrails

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO / "examples" / "media"
TINY_HW = (64, 96)
PROMPT = "A small orange square slides across a grey floor."
JOB = [sys.executable, "-m", "jobs.generate", "--preset", "tiny", "--groups", "1"]  # a job in its own process
LONG_VIDEO = {
    "enable_autoregressive": True,
    "num_output_frames": 17,
    "chunk_size": 9,
    "chunk_overlap": 1,
    "cosmos_ray_num_frames": None,  # the length is num_output_frames
}


def spec(name: str, inference_type: str = "text2world", **fields) -> dict:
    return {
        "inference_type": inference_type,
        "name": name,
        "prompt": PROMPT,
        "cosmos_ray_num_frames": 9,
        "num_steps": 2,
        **fields,
    }


def manifest_row(data: dict | str, source: str) -> dict:
    spec_json = data if isinstance(data, str) else json.dumps(data)
    name = "" if isinstance(data, str) else data["name"]
    return {"spec_json": spec_json, "name": name, "inference_type": "", "source": source}


def write_manifest(url: str, rows: list[dict], storage_options: dict | None = None) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), buffer)
    with fsspec.open(url, "wb", **(storage_options or {})) as f:
        f.write(buffer.getvalue())


def decode(data: bytes) -> tuple[int, tuple[int, int], float]:
    """(frame count, (width, height), fps) of mp4 bytes, by ffmpeg."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as video:
        video.write(data)
        video.flush()
        reader = imageio_ffmpeg.read_frames(video.name)
        info = next(reader)
        return sum(1 for _ in reader), tuple(info["size"]), info["fps"]


def live_placement_groups(prefix: str) -> list[str]:
    return [
        info["name"]
        for info in ray.util.placement_group_table().values()
        if info["name"].startswith(prefix) and info["state"] != "REMOVED"
    ]


# --- one run with everything in S3 --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_job(ray_session, s3_endpoint):
    options = s3_endpoint.storage_options
    bucket = s3_endpoint.bucket("batch-job")
    fs = fsspec.filesystem("s3", **options)
    fs.put(str(MEDIA / "square.png"), f"{bucket}/media/square.png")
    fs.put(str(MEDIA / "square.mp4"), f"{bucket}/media/square.mp4")
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
    assert (summary.ok, summary.failed, summary.skipped) == (11, 2, 0)
    assert summary.gpus == 4
    assert summary.videos_per_hour > 0


def test_the_run_table_has_every_row_in_manifest_order(s3_job):
    table = s3_job["store"].read_run_table(s3_job["summary"].run_id)
    assert [record.source for record in table] == [f"specs.jsonl:{i + 1}" for i in range(13)]
    assert [record.status for record in table] == ["ok"] * 11 + ["failed"] * 2
    invalid, missing = table[11], table[12]
    assert invalid.sample_id is None and "bad-guidance" in invalid.error and "'guidance'" in invalid.error
    assert missing.sample_id is not None and "MediaError" in missing.error and "missing.png" in missing.error


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
        output="s3://no-such-bucket/out",
        storage=Storage(s3_endpoint.storage_options),
    )
    (record,) = written.to_pylist()
    assert (record["row"], record["status"], record["source"]) == (3, "failed", "specs.jsonl:4")
    assert record["error"].startswith("writing the outputs failed") and "unwritable" in record["sample_id"]


# --- reading the manifest (rows that need no GPU) -----------------------------------------------------------


def test_limit_keeps_the_first_rows_in_manifest_order(ray_session, tmp_path):
    rows = [manifest_row(spec(f"bad-{i}", guidance=9), f"rows.jsonl:{i + 1}") for i in range(300)]
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), manifest, row_group_size=32)
    summary = run(
        BatchConfig(
            manifest=str(manifest),
            output=str(tmp_path / "out"),
            limit=200,
            run_id="limited",
            group=GroupConfig(),
        )
    )
    assert (summary.ok, summary.failed, summary.skipped, summary.gpus) == (0, 200, 0, 0)
    table = OutputStore(str(tmp_path / "out")).read_run_table("limited")
    assert [record.source for record in table] == [f"rows.jsonl:{i + 1}" for i in range(200)]
    assert all(f"bad-{i}" in str(record.error) for i, record in enumerate(table))


def test_invalid_duplicate_and_done_rows_need_no_gpu_and_are_named(ray_session, tmp_path, caplog):
    done = spec("done")
    rows = [
        manifest_row(spec("bad-guidance", guidance=9), "d.jsonl:1"),
        manifest_row(spec("too-long", cosmos_ray_num_frames=1001), "d.jsonl:2"),  # over SpecLimits' 961
        manifest_row(done, "d.jsonl:3"),
        manifest_row(done, "d.jsonl:4"),
    ]
    manifest, output = tmp_path / "manifest.parquet", tmp_path / "out"
    write_manifest(str(manifest), rows)
    store = OutputStore(str(output))
    store.write_ok(GenerationSpec.from_dict(done), b"mp4", {})
    with caplog.at_level(logging.INFO, logger="pipelines.batch"):
        summary = run(BatchConfig(manifest=str(manifest), output=str(output), run_id="no-gpu"))
    assert (summary.ok, summary.failed, summary.skipped, summary.duplicates, summary.gpus) == (0, 2, 1, 1, 0)
    table = store.read_run_table("no-gpu")
    assert [record.status for record in table] == ["failed", "failed", "skipped", "duplicate"]
    assert table[3].metadata == {"duplicate_of": "d.jsonl:3"} and table[3].sample_id == table[2].sample_id
    assert "field 'cosmos_ray_num_frames' must be at most 961 here, got 1001" in str(table[1].error)
    log = caplog.text
    assert "4 samples, 0 to generate, 1 already done, 1 duplicate, 2 invalid" in log
    assert "invalid row: sample 'bad-guidance' (d.jsonl:1): field 'guidance' must be in 0..7, got 9" in log
    assert f"duplicate row d.jsonl:4: sample {table[2].sample_id} is the one of d.jsonl:3" in log
    assert "2 failure(s), all in the run table:" in log and "d.jsonl:2: sample 'too-long'" in log


def test_a_layout_the_cluster_can_never_hold_fails_before_reading_the_manifest(ray_session, tmp_path):
    manifest = tmp_path / "manifest.parquet"
    write_manifest(str(manifest), [manifest_row(spec("a"), "a.jsonl:1")])
    config = BatchConfig(manifest=str(manifest), output=str(tmp_path / "out"), group=GroupConfig(gpus_per_group=8))
    with pytest.raises(placement.PlacementError) as caught:
        run(config)
    assert str(caught.value).startswith(
        "a GPU group of 8 needs 8 GPUs on one node, but the largest node has 4 and no autoscaler can add nodes"
    )
    assert caught.value.layouts == [(4, 1), (1, 4)]
    assert not (tmp_path / "out" / "runs").exists()


def test_the_first_group_waits_for_free_gpus_until_the_schedule_timeout(ray_session, tmp_path, caplog, monkeypatch):
    manifest = tmp_path / "manifest.parquet"
    write_manifest(str(manifest), [manifest_row(spec("a"), "a.jsonl:1")])
    monkeypatch.setattr(placement, "PLACEMENT_LOG_EVERY_S", 0.5)
    every_gpu = ray.util.placement_group([{"GPU": 1}] * 4, strategy="STRICT_PACK")  # another job holds them all
    assert every_gpu.wait(timeout_seconds=60)
    config = BatchConfig(
        manifest=str(manifest), output=str(tmp_path / "out"), group=GroupConfig(), schedule_timeout_s=2
    )
    try:
        with (
            caplog.at_level(logging.WARNING, logger="pipelines.placement"),
            pytest.raises(placement.PlacementError) as caught,
        ):
            run(config)
    finally:
        ray.util.remove_placement_group(every_gpu)
    assert str(caught.value).startswith("no node had 1 free GPU(s) for a group within 2s")
    assert "waiting for 1 free GPU(s) on one node for the first GPU group" in caplog.text


def test_a_table_without_the_manifest_columns_is_refused(ray_session, tmp_path):
    manifest = tmp_path / "not-a-manifest.parquet"
    pq.write_table(pa.table({"spec_json": [json.dumps(spec("a"))]}), manifest)
    with pytest.raises(ValueError, match="not-a-manifest.parquet is not a cosmos-ray manifest: missing column"):
        run(BatchConfig(manifest=str(manifest), output=str(tmp_path / "out"), group=GroupConfig()))


def test_samples_made_before_sharding_was_on_are_sharded_by_the_next_run(ray_session, tmp_path):
    specs = [spec(f"earlier-{i}") for i in range(5)]
    manifest, output = tmp_path / "manifest.parquet", tmp_path / "out"
    write_manifest(str(manifest), [manifest_row(data, f"e.jsonl:{i + 1}") for i, data in enumerate(specs)])
    store = OutputStore(str(output))
    for i, data in enumerate(specs):  # committed by an earlier run without shards (no GPU needed here)
        store.write_ok(GenerationSpec.from_dict(data), b"x" * (100 + i), {})
    config = BatchConfig(
        manifest=str(manifest),
        output=str(output),
        run_id="shard-later",
        sinks=(WebDatasetSink(ShardConfig(max_bytes=250)),),
        group=GroupConfig(),
    )
    summary = run(config)
    assert (summary.skipped, summary.sink_reports, summary.gpus) == (5, ("3 shard(s) written",), 0)
    index = ShardStore(store).read_index()
    ids = [GenerationSpec.from_dict(data).sample_id for data in specs]
    assert index.column("sample_id").to_pylist() == ids  # in manifest order, 2 + 2 + 1 within 250 bytes
    assert index.column("shard").to_pylist() == ["shard-000000.tar"] * 2 + ["shard-000001.tar"] * 2 + [
        "shard-000002.tar"
    ]
    assert run(dataclasses.replace(config, run_id="shard-again")).sink_reports == ()


def test_a_shard_that_cannot_be_written_leaves_its_samples_to_the_next_run(ray_session, tmp_path, caplog):
    store = OutputStore(str(tmp_path))
    first, second = (GenerationSpec.from_dict(spec(name)) for name in ("first", "second"))
    for s in (first, second):
        store.write_ok(s, b"video", {})
    ids = (first.sample_id, second.sample_id)
    info = RunInfo(run_id="r", store=store, committed=ids, to_generate=())
    store.write_failure(second, "regenerated since, and failed")  # no longer done when the task reads it
    sink = WebDatasetSink(ShardConfig(max_samples=2))
    with caplog.at_level(logging.WARNING, logger="pipelines.batch.sinks.webdataset"):
        sink.start(info)
        assert sink.finish() == ""
    assert not (tmp_path / "shards").exists()
    assert f"shard shard-000000.tar (2 samples) was not written: ValueError: sample {second.sample_id}" in caplog.text

    store.write_ok(second, b"video", {})
    sink.start(info)  # the same sink, for the next run
    assert sink.finish() == "1 shard(s) written"
    assert set(ShardStore(store).read_index().column("sample_id").to_pylist()) == set(ids)


# --- a sink of the tests' own: adding one is a class and its registration ----------------------------------


@register_sink("recording")
class RecordingSink(Sink):
    """Records what each hook saw in files under `folder`: `write` runs in the writer stage's Ray tasks (one
    file per sample, a copy of its video), the other hooks on the driver. It refuses samples named "refused-*"."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self._added: list[str | None] = []  # driver state: stays on the driver

    def start(self, run: RunInfo) -> None:
        self._added = []
        (self.folder / "written").mkdir(parents=True, exist_ok=True)
        seen = {"run_id": run.run_id, "committed": run.committed, "to_generate": run.to_generate, "cpus": run.cpus}
        (self.folder / "start.json").write_text(json.dumps(seen))

    def write(self, sample: GeneratedSample) -> None:
        assert not hasattr(self, "_added")  # what a task gets is the configuration alone
        if sample.spec.name.startswith("refused-"):
            raise OSError("the recording sink refuses this one")
        (self.folder / "written" / f"{sample.spec.sample_id}.mp4").write_bytes(sample.mp4)

    def add(self, record: OutputRecord) -> None:
        self._added.append(record.sample_id)

    def finish(self, *, interrupted: bool = False) -> str:
        (self.folder / "added.json").write_text(json.dumps(self._added))
        return f"{len(self._added)} sample(s) recorded"


def test_a_registered_sink_sees_every_sample_and_reports_in_the_summary(ray_session, tmp_path):
    specs = [spec("recorded-a", seed=1, num_steps=1), spec("recorded-b", seed=2, num_steps=1), spec("done")]
    specs.append(spec("refused-by-the-sink", num_steps=1))
    manifest, output, folder = tmp_path / "manifest.parquet", tmp_path / "out", tmp_path / "recording"
    write_manifest(str(manifest), [manifest_row(data, f"r.jsonl:{i + 1}") for i, data in enumerate(specs)])
    store = OutputStore(str(output))
    a, b, done, refused = (GenerationSpec.from_dict(data).sample_id for data in specs)
    store.write_ok(GenerationSpec.from_dict(specs[2]), b"an earlier run's video", {})
    config = BatchConfig(
        manifest=str(manifest),
        output=str(output),
        run_id="recorded",
        groups=1,
        group=GroupConfig(),
        writer_cpus=0.5,
        sinks=(SinkConfig("recording", {"folder": str(folder)}),),  # by its registered name
    )
    summary = run(config)
    assert (summary.ok, summary.failed, summary.skipped) == (2, 1, 1)
    assert summary.sink_reports == ("2 sample(s) recorded",)
    assert "2 ok, 1 failed, 0 blocked, 1 skipped, 2 sample(s) recorded in " in str(summary)

    started = json.loads((folder / "start.json").read_text())
    assert (started["run_id"], started["committed"], started["cpus"]) == ("recorded", [done], 0.5)
    assert sorted(started["to_generate"]) == sorted([a, b, refused])
    written = {path.stem: path.read_bytes() for path in (folder / "written").iterdir()}
    assert written == {sample_id: Path(store.video_url(sample_id)).read_bytes() for sample_id in (a, b)}
    assert sorted(json.loads((folder / "added.json").read_text())) == sorted([a, b])

    # A sink that fails fails its sample before the files sink commits it: no meta, no video; a rerun retries it.
    (record,) = [r for r in store.read_run_table("recorded") if r.sample_id == refused]
    assert record.status == "failed"
    assert record.error == "writing the outputs failed: OSError: the recording sink refuses this one"
    assert store.read_record(refused) is None and not Path(store.video_url(refused)).exists()


# --- a job killed midway, resumed ---------------------------------------------------------------------------


def kill_job_once(command: list[str], ready: Callable[[], bool], log: Path) -> None:
    """Runs the job `command` (output to `log`) and kills it with SIGKILL as soon as `ready()` holds (or it ends)."""
    with open(log, "wb") as out:
        job = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: ready() or job.poll() is not None, timeout_s=300)
        finally:
            job.send_signal(signal.SIGKILL)
            job.wait()


def test_a_killed_job_resumes_without_duplicates_or_gaps(ray_session, tmp_path):
    specs = [spec(f"resume-{i}", seed=i, guidance=0) for i in range(6)]
    manifest, output = tmp_path / "manifest.parquet", tmp_path / "out"
    write_manifest(str(manifest), [manifest_row(data, f"resume.jsonl:{i + 1}") for i, data in enumerate(specs)])
    command = [
        *JOB,
        "--manifest",
        str(manifest),
        "--output",
        str(output),
        "--run-id",
        "killed",
        "--address",
        ray_session.address_info["gcs_address"],
    ]
    kill_job_once(command, lambda: any((output / "meta").glob("*.json")), log=tmp_path / "killed.log")
    done_before = len(list((output / "meta").glob("*.json")))
    assert 1 <= done_before < len(specs), (tmp_path / "killed.log").read_text()[-3000:]

    config = BatchConfig(
        manifest=str(manifest),
        output=str(output),
        groups=1,
        run_id="resumed",
        group=GroupConfig(gpus_per_group=1),
    )
    resumed = run(config)
    assert (resumed.ok, resumed.skipped, resumed.failed) == (len(specs) - done_before, done_before, 0)

    store = OutputStore(str(output))
    records = store.read_run_table("resumed")
    assert sorted(record.name for record in records) == [data["name"] for data in specs]
    assert all(record.sample_id is not None and store.is_done(record.sample_id) for record in records)
    videos = sorted(path.name for path in (output / "videos").iterdir())
    metas = sorted(path.name for path in (output / "meta").iterdir())
    assert videos == sorted(f"{r.sample_id}.mp4" for r in records)  # one video each, no temporary leftovers
    assert metas == sorted(f"{r.sample_id}.json" for r in records)

    again = run(BatchConfig(manifest=str(manifest), output=str(output), group=GroupConfig()))
    assert (again.ok, again.skipped, again.failed, again.gpus) == (0, len(specs), 0, 0)
    wait_for(lambda: not live_placement_groups("cosmos-ray-killed-"), timeout_s=60)  # died with the killed job

    (output / "videos" / f"{records[0].sample_id}.mp4").unlink()  # its meta still says ok
    regenerated = run(BatchConfig(manifest=str(manifest), output=str(output), group=GroupConfig()))
    assert (regenerated.ok, regenerated.skipped) == (1, len(specs) - 1)
    assert records[0].sample_id is not None and store.is_done(records[0].sample_id)


def test_ctrl_c_writes_the_run_table_of_what_finished_and_the_rerun_resumes(ray_session, tmp_path):
    specs = [spec(f"interrupt-{i}", seed=i, guidance=0) for i in range(8)]
    manifest, output = tmp_path / "manifest.parquet", tmp_path / "out"
    write_manifest(str(manifest), [manifest_row(data, f"int.jsonl:{i + 1}") for i, data in enumerate(specs)])
    command = [sys.executable, "-m", "jobs.generate", "--manifest", str(manifest), "--output", str(output)]
    command += ["--preset", "tiny", "--groups", "1", "--run-id", "interrupted"]
    command += ["--address", ray_session.address_info["gcs_address"]]
    # SIGINT back to its default: a shell that runs the tests in the background may have set it to ignored
    with open(tmp_path / "interrupted.log", "wb") as log:
        job = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            wait_for(lambda: "[1/8] ok" in (tmp_path / "interrupted.log").read_text() or job.poll() is not None, 300)
            job.send_signal(signal.SIGINT)
            status = job.wait(timeout=120)
        finally:
            job.kill()
    text = (tmp_path / "interrupted.log").read_text()
    assert status == 130, text[-3000:]
    assert "rerun the same command to resume" in text and "Traceback" not in text
    store = OutputStore(str(output))
    finished = store.read_run_table("interrupted")
    assert 1 <= len(finished) < len(specs)
    assert all(record.status == "ok" and store.is_done(str(record.sample_id)) for record in finished)

    resumed = run(BatchConfig(manifest=str(manifest), output=str(output), group=GroupConfig()))
    assert resumed.skipped >= len(finished)  # what finished, and whatever was written after the table
    assert (resumed.ok + resumed.skipped, resumed.failed, resumed.not_finished) == (len(specs), 0, 0)


def test_generations_and_shards_survive_a_kill_without_loss_or_duplicates(ray_session, tmp_path):
    specs = [spec("gens-a", seed=10, guidance=0, num_steps=1), spec("gens-b", seed=20, guidance=0, num_steps=1)]
    manifest, output = tmp_path / "manifest.parquet", tmp_path / "out"
    write_manifest(str(manifest), [manifest_row(data, f"gens.jsonl:{i + 1}") for i, data in enumerate(specs)])
    expected = {  # the manifest's specs ask for one video each; --num-generations 3 asks for three
        g.sample_id: g.seed
        for data in specs
        for g in GenerationSpec.from_dict({**data, "num_generations": 3}).generations()
    }
    index_folder = output / "shards" / "index"
    command = [
        *JOB,
        "--manifest",
        str(manifest),
        "--output",
        str(output),
        "--num-generations",
        "3",
        "--shard-samples",
        "2",
        "--run-id",
        "killed-shards",
        "--address",
        ray_session.address_info["gcs_address"],
    ]
    kill_job_once(command, lambda: any(index_folder.glob("*.parquet")), log=tmp_path / "killed.log")
    store = OutputStore(str(output))
    done_before = [sample_id for sample_id in expected if store.is_done(sample_id)]
    committed_before = ShardStore(store).read_index()
    assert 2 <= len(done_before) < len(expected), (tmp_path / "killed.log").read_text()[-3000:]
    assert 1 <= committed_before.num_rows <= len(done_before)
    # What a kill between a tar and its index file leaves: a tar that no index file commits.
    (output / "shards" / "shard-000041.tar").write_bytes(b"an uncommitted shard")

    config = BatchConfig(
        manifest=str(manifest),
        output=str(output),
        groups=1,
        run_id="resumed-shards",
        num_generations=3,
        sinks=(WebDatasetSink(ShardConfig(max_samples=2)),),
        group=GroupConfig(),
    )
    resumed = run(config)
    assert (resumed.ok, resumed.skipped, resumed.failed) == (len(expected) - len(done_before), len(done_before), 0)
    records = store.read_run_table("resumed-shards")

    def seed(record: OutputRecord) -> int:  # the seed a video was made with; a skipped sample's spec says it
        assert record.spec_json is not None
        return record.metadata.get("seed", json.loads(record.spec_json)["seed"])

    assert {r.sample_id: seed(r) for r in records} == expected
    assert [r.source for r in records] == ["gens.jsonl:1"] * 3 + ["gens.jsonl:2"] * 3  # manifest, then seed order
    assert all(store.is_done(sample_id) for sample_id in expected)

    # Every sample in exactly one committed shard; every tar on disk committed; tars hold what the index says.
    index = ShardStore(store).read_index()
    assert sorted(index.column("sample_id").to_pylist()) == sorted(expected)
    assert set(committed_before.column("sample_id").to_pylist()) <= set(index.column("sample_id").to_pylist())
    tars = sorted(path.name for path in (output / "shards").glob("*.tar"))
    assert tars == sorted(set(index.column("shard").to_pylist())) and "shard-000041.tar" not in tars
    loaded = ray.data.read_webdataset(str(output / "shards"), file_extensions=["tar"]).take_all()
    assert sorted(row["__key__"] for row in loaded) == sorted(index.column("key").to_pylist())
    sample_of_key = dict(zip(index.column("key").to_pylist(), index.column("sample_id").to_pylist()))
    for row in loaded:
        sample_id = sample_of_key[row["__key__"]]
        assert row["json"]["sample_id"] == sample_id and row["json"]["status"] == "ok"
        assert bytes(row["mp4"]) == (output / "videos" / f"{sample_id}.mp4").read_bytes()

    again = run(dataclasses.replace(config, run_id="again-shards"))
    assert (again.ok, again.skipped, again.sink_reports) == (0, len(expected), ())
    assert ShardStore(store).read_index() == index


# --- metrics -------------------------------------------------------------------------------------------------


def test_a_runs_progress_is_logged_and_visible_through_rays_metrics_endpoint(ray_session, tmp_path, caplog):
    """One progress line per finished sample; the driver's Ray metrics, scraped as Prometheus does: gauges
    while the run lasts (Ray keeps a gauge only while it is set), counters and stage histograms after it."""
    specs = [spec(f"metrics-{i}", seed=i, guidance=0, num_steps=1) for i in range(3)] + [spec("bad", guidance=9)]
    manifest = tmp_path / "manifest.parquet"
    write_manifest(str(manifest), [manifest_row(data, f"m.jsonl:{i + 1}") for i, data in enumerate(specs)])
    config = BatchConfig(
        manifest=str(manifest), output=str(tmp_path / "out"), groups=1, run_id="metrics", group=GroupConfig()
    )
    url = f"http://127.0.0.1:{ray_session.address_info['metrics_export_port']}/metrics"
    seen: dict = {}

    def scraped(expected: dict) -> bool:
        seen.clear()
        for family in text_string_to_metric_families(requests.get(url, timeout=10).text):
            for sample in family.samples:
                if sample.labels.get("run_id") == "metrics":
                    key = (sample.name, sample.labels.get("status", sample.labels.get("stage")))
                    seen[key] = seen.get(key, 0.0) + sample.value
        return all(seen.get(key) == value for key, value in expected.items())

    with ThreadPoolExecutor(max_workers=1) as pool, caplog.at_level(logging.INFO, logger="pipelines.monitor"):
        job = pool.submit(run, config)
        while_running = {("ray_cosmos_ray_gpus", None): 1.0}
        wait_for(lambda: scraped(while_running), timeout_s=300, describe=lambda: f"scraped {seen}")
        assert seen[("ray_cosmos_ray_samples_remaining", None)] in (0.0, 1.0, 2.0, 3.0)
        summary = job.result()
    assert (summary.ok, summary.failed) == (3, 1)
    lines = [message for message in caplog.messages if " clips/h | ETA " in message]
    assert [line.split(" ")[:2] for line in lines] == [["[1/3]", "ok"], ["[2/3]", "ok"], ["[3/3]", "ok"]]
    assert " | 3 ok, 1 failed, 0 skipped | " in lines[-1] and lines[-1].endswith(" | ETA 0s")
    after = {
        ("ray_cosmos_ray_samples_total", "ok"): 3.0,
        ("ray_cosmos_ray_samples_total", "failed"): 1.0,  # the invalid row
        ("ray_cosmos_ray_stage_seconds_count", "sampling"): 3.0,
        ("ray_cosmos_ray_stage_seconds_count", "mp4_encode"): 3.0,
    }
    wait_for(lambda: scraped(after), timeout_s=120, describe=lambda: f"expected {after}, scraped {seen}")
    assert seen[("ray_cosmos_ray_denoising_gpu_seconds_total", None)] > 0


def wait_for(condition, timeout_s: float, describe=lambda: "timed out") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, describe()
        time.sleep(0.5)


# --- the command line ---------------------------------------------------------------------------------------


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate_main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in (
        "--manifest",
        "--output",
        "--preset",
        "--checkpoint-dir",
        "--dtype",
        "--compile",
        "--gpus-per-group",
        "--groups",
        "--autoscale",
        "--embedding-cache",
        "--limit",
        "--num-generations",
        "--shard-size",
        "--shard-samples",
        "--run-id",
        "--storage-option",
        "--address",
        "--logical-gpus",
        "--model",
        "--offload-diffusion-model",
        "--offload-tokenizer",
        "--offload-text-encoder",
        "--schedule-timeout",
        "--max-num-output-frames",
        "--max-pixels",
        "--max-num-steps",
    ):
        assert option in help_text
    for model in ("2B/pre-trained", "2B/post-trained", "2B/distilled", "14B/pre-trained", "14B/post-trained"):
        assert f"  {model}: " in help_text  # each official model with what it is for


def test_model_and_offload_options():
    args = parse_args(
        ["--manifest", "m", "--output", "o", "--preset", "random-14B", "--model", "14B/post-trained"]
        + ["--offload_text_encoder", "--offload-tokenizer"]
    )
    assert (args.engine.model, args.engine.offload) == (
        "14B/post-trained",
        OffloadConfig(tokenizer=True, text_encoder=True),
    )
    assert parse_args(["--manifest", "m", "--output", "o", "--preset", "tiny"]).model == "2B/post-trained"


def test_the_check_stage_refuses_specs_the_model_cannot_generate(tmp_path):
    rows = [manifest_row(spec("t2w"), "a:0"), manifest_row(spec("i2w", "image2world", input_path="/in/x.png"), "a:1")]
    batch = pa.Table.from_pylist(rows).select(["spec_json", "name", "source"])
    check = partial(check_rows, batch, output=str(tmp_path), storage=Storage(), limits=SpecLimits())
    checked = check(model="2B/distilled").to_pylist()
    assert [row["status"] for row in checked] == ["pending", "invalid"]
    assert "field 'inference_type' image2world is not supported by model 2B/distilled" in checked[1]["error"]
    checked = check(model="2B/post-trained").to_pylist()
    assert [row["status"] for row in checked] == ["pending", "pending"]


def test_storage_options_nest_and_parse_json_values():
    args = parse_args(
        [
            "--manifest",
            "m",
            "--output",
            "o",
            "--preset",
            "tiny",
            "--autoscale",
            "2..8",
            "--storage-option",
            "client_kwargs.endpoint_url=http://127.0.0.1:9000",
            "--storage-option",
            "client_kwargs.region_name=us-east-1",
            "--storage-option",
            "anon=true",
        ]
    )
    assert args.autoscale == (2, 8)
    assert args.engine.storage.options == {
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "us-east-1"},
        "anon": True,
    }


@pytest.mark.parametrize(
    "argv, shards",
    [
        ([], None),
        (["--shard-size", "2GiB"], ShardConfig(max_bytes=2 * 2**30)),
        (["--shard-samples", "50"], ShardConfig(max_samples=50)),
        (["--shard-size", "1.5MB", "--shard-samples", "3"], ShardConfig(max_bytes=1_500_000, max_samples=3)),
    ],
)
def test_either_shard_option_turns_sharding_on(argv, shards):
    assert parse_args(["--manifest", "m", "--output", "o", "--preset", "tiny", *argv]).shards == shards


@pytest.mark.parametrize(
    "argv",
    [
        ["--autoscale", "3..2"],
        ["--autoscale", "4"],
        ["--groups", "0"],
        ["--groups", "2", "--autoscale", "1..2"],
        ["--storage-option", "no-equals-sign"],
        ["--num-generations", "0"],
        ["--num-generations", "3", "--max-num-generations", "2"],
        ["--shard-size", "5 parsecs"],
        ["--shard-size", "0MB"],
        ["--shard-samples", "0"],
        ["--logical-gpus", "4", "--address", "auto"],
        ["--model", "2B"],
        ["--preset", "random-2B", "--model", "14B/pre-trained"],
    ],
)
def test_bad_arguments_exit_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--manifest", "m", "--output", "o", "--preset", "tiny", *argv])
    assert exit_info.value.code == 2


# --- guardrails (the stand-in of tests/guardrail_standin.py; the official checks need their weights) -------


def test_blocked_prompts_and_videos_are_recorded_never_written_and_the_job_goes_on(ray_session, tmp_path, caplog):
    rows = [
        manifest_row(spec("allowed", seed=1), "g.jsonl:1"),
        manifest_row(spec("bad-prompt", prompt="A forbidden square."), "g.jsonl:2"),
        manifest_row(spec("bad-video", cosmos_ray_num_frames=5), "g.jsonl:3"),  # the stand-in blocks 5 frames
    ]
    manifest, output = tmp_path / "manifest.parquet", tmp_path / "out"
    write_manifest(str(manifest), rows)
    checks = StandInGuardrails(blocked_frame_counts=(5,))
    config = BatchConfig(
        manifest=str(manifest),
        output=str(output),
        run_id="guarded",
        groups=1,
        group=GroupConfig(),
        guardrails=GuardrailSetting(checks, "the tests' stand-in"),
    )
    with caplog.at_level(logging.INFO, logger="pipelines.batch"):
        summary = run(config)
    assert (summary.ok, summary.failed, summary.blocked, summary.skipped) == (1, 0, 2, 0)
    assert "1 ok, 0 failed, 2 blocked, 0 skipped" in str(summary)
    assert "; guardrails on (the tests' stand-in); table:" in str(summary)
    store = OutputStore(str(output))
    allowed, bad_prompt, bad_video = store.read_run_table("guarded")
    assert [r.status for r in (allowed, bad_prompt, bad_video)] == ["ok", "blocked", "blocked"]
    assert bad_prompt.error == "prompt blocked by the guardrails: stand-in: the prompt contains 'forbidden'"
    assert "sampling" not in bad_prompt.metadata.get("timings_s", {})  # never reached a GPU
    assert bad_video.error == "video blocked by the guardrails: stand-in: a video of 5 frames"
    for record in (bad_prompt, bad_video):
        assert record.sample_id is not None
        assert store.read_record(record.sample_id) == record  # the meta file says why
        assert not Path(store.video_url(record.sample_id)).exists() and record.video_url is None
    assert allowed.metadata["guardrails"] == "stand-in" and "guardrails" in allowed.metadata["timings_s"]
    reader = imageio_ffmpeg.read_frames(allowed.video_url)
    next(reader)  # the stream's info
    pixels = np.frombuffer(b"".join(reader), np.uint8)
    assert np.abs(pixels.astype(int) - GREY).max() <= 2  # the stand-in's "face blur" ran before the mp4 was written
    assert "2 sample(s) blocked by the guardrails, all in the run table:" in caplog.text
    assert "run guarded: guardrails on (the tests' stand-in)" in caplog.text
