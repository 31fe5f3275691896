"""A batch job whose output storage stops taking writes: the writer stage marks such samples, and the driver stops
the job after a run of them (one line, exit 1) instead of generating every remaining sample for nothing; the
rerun resumes. On a local Ray with logical GPUs and the tiny preset; meta/ is broken mid-run by replacing it with
a file (chmod would not stop the root user the tests may run as)."""

import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from cosmos_ray.core.outputs import FAILED, OutputStore
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.storage import Storage
from pipelines.batch import GENERATED_SCHEMA, BatchConfig, StorageGone, failure_message, run, write_outputs
from pipelines.group import GroupConfig
from tests.batch_helpers import REPO, manifest_row, spec, wait_for, write_manifest
from tests.test_batch_resume import JOB
from tests.test_sinks import generated_row


def _write(output: Path, row: dict) -> dict:
    batch = pa.Table.from_pylist([row], schema=GENERATED_SCHEMA)
    written = write_outputs(batch, output=str(output), storage=Storage(), run_id="r", model="2B/post-trained")
    (written,) = written.to_pylist()
    return written


def test_the_writer_marks_samples_that_storage_refused(tmp_path):
    output = tmp_path / "out"
    assert _write(output, generated_row("fine"))["storage_failed"] is False
    (output / "meta").rename(tmp_path / "meta-saved")
    (output / "meta").write_bytes(b"")  # meta/ is now a file: no record can be written
    for row in (generated_row("video"), generated_row("failure", error="RuntimeError: the group failed")):
        written = _write(output, row)
        assert written["status"] == FAILED and written["storage_failed"] is True
        assert "writing the outputs failed: StorageError: cannot write" in written["error"]
    assert written["error"].startswith("RuntimeError: the group failed; ")  # why it failed in the first place


def test_storage_gone_is_one_line_and_crosses_processes():
    import pickle

    error = pickle.loads(pickle.dumps(StorageGone(3, "cannot write x: read-only file system")))
    assert failure_message(error) == (
        "stopped: the outputs of 3 samples in a row could not be written (the last: cannot write x: read-only file "
        "system); fix the output storage, then rerun the same command to resume"
    )
    with pytest.raises(ValueError, match="max_storage_failures must be at least 1"):
        BatchConfig(manifest="m", output="o", max_storage_failures=0)


@pytest.mark.ray
def test_a_job_whose_storage_breaks_stops_after_a_run_of_failures_and_resumes(ray_session, tmp_path):
    specs = [spec(f"storage-{i}", seed=i, guidance=0) for i in range(8)]
    manifest, output = tmp_path / "manifest.parquet", tmp_path / "out"
    write_manifest(str(manifest), [manifest_row(data, f"s.jsonl:{i + 1}") for i, data in enumerate(specs)])
    command = [*JOB, "--manifest", str(manifest), "--output", str(output), "--run-id", "broken"]
    command += ["--max-storage-failures", "2", "--address", ray_session.address_info["gcs_address"]]
    meta, saved = output / "meta", tmp_path / "meta-saved"
    with open(tmp_path / "job.log", "wb") as log:
        job = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.PIPE)
        wait_for(lambda: any(meta.glob("*.json")) or job.poll() is not None, timeout_s=300)
        meta.rename(saved)  # the storage breaks after the first committed sample
        meta.write_bytes(b"")
        _, stderr = job.communicate(timeout=300)
    last_line = stderr.decode().strip().splitlines()[-1]
    assert job.returncode == 1, stderr.decode()[-3000:]
    assert last_line.startswith("error: stopped: the outputs of 2 samples in a row could not be written (the last: ")
    assert last_line.endswith("fix the output storage, then rerun the same command to resume")
    committed = len(list(saved.glob("*.json")))
    generated = len(list((output / "videos").glob("*.mp4")))  # the refused samples' videos too (no meta)
    assert committed >= 1 and generated < len(specs)  # it stopped instead of generating every sample
    table = OutputStore(str(output)).read_run_table("broken")  # runs/ still took the table
    assert sum(record.status == FAILED for record in table) >= 2

    meta.unlink()  # the storage is fixed
    saved.rename(meta)
    resumed = run(BatchConfig(manifest=str(manifest), output=str(output), groups=1, group=GroupConfig()))
    assert (resumed.ok, resumed.skipped, resumed.failed) == (len(specs) - committed, committed, 0)
    store = OutputStore(str(output))
    assert all(store.is_done(GenerationSpec.from_dict(data).sample_id) for data in specs)
