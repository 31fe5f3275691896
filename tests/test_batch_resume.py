"""A batch job killed midway and resumed, on a local Ray with logical GPUs and the tiny preset, on local paths:
SIGKILL to its driver process (videos, then generations and shards: no loss, no duplicates), and Ctrl-C (the
run table of what finished, then the rerun)."""

import dataclasses
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import ray

from cosmos_ray.core.outputs import OutputRecord, OutputStore
from cosmos_ray.core.shards import ShardConfig, ShardStore
from cosmos_ray.core.spec import GenerationSpec
from pipelines.batch import BatchConfig, WebDatasetSink, run
from pipelines.group import GroupConfig
from tests.batch_helpers import REPO, live_placement_groups, manifest_row, spec, wait_for, write_manifest

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it

JOB = [sys.executable, "-m", "jobs.generate", "--preset", "tiny", "--groups", "1"]  # a job in its own process


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
