"""OutputStore: layout, commit order, done/failed/skipped records and run tables, locally and on moto S3."""

import json
import os

import pytest

from cosmos_ray.core import outputs
from cosmos_ray.core.outputs import OutputRecord, OutputStore
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.storage import Storage

SPEC = GenerationSpec.from_dict({"inference_type": "text2world", "name": "snowy stop", "prompt": "Snow."})
OTHER = GenerationSpec.from_dict({"inference_type": "text2world", "name": "rain", "prompt": "Rain."})
MP4 = b"\x00\x00\x00\x18ftypmp42 fake video"


def test_write_ok_layout_and_record(tmp_path):
    store = OutputStore(str(tmp_path))
    assert not store.is_done(SPEC.sample_id)
    record = store.write_ok(SPEC, MP4, {"seed": 0, "timings_s": {"dit": 1.5}}, source="specs.jsonl:0")

    video = tmp_path / "videos" / f"{SPEC.sample_id}.mp4"
    meta = tmp_path / "meta" / f"{SPEC.sample_id}.json"
    assert video.read_bytes() == MP4
    assert json.loads(meta.read_bytes()) == {
        "sample_id": SPEC.sample_id,
        "name": "snowy stop",
        "status": "ok",
        "video_url": str(video),
        "views": [],
        "error": None,
        "source": "specs.jsonl:0",
        "spec_json": SPEC.to_json(),
        "metadata": {"seed": 0, "timings_s": {"dit": 1.5}},
        "finished_at": record.finished_at,
    }
    assert record.finished_at.endswith("+00:00")
    assert store.is_done(SPEC.sample_id)
    assert store.read_record(SPEC.sample_id) == record
    assert record.spec_json is not None and GenerationSpec.from_dict(json.loads(record.spec_json)) == SPEC


def test_relative_root_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert OutputStore("out").video_url("x") == str(tmp_path / "out" / "videos" / "x.mp4")


def test_video_is_written_before_the_record(tmp_path, monkeypatch):
    order = []
    real_write = Storage.write_bytes_atomic

    def recording_write(self, url, data):
        order.append(url.rsplit("/", 2)[-2])
        real_write(self, url, data)

    monkeypatch.setattr(Storage, "write_bytes_atomic", recording_write)
    OutputStore(str(tmp_path)).write_ok(SPEC, MP4, {})
    assert order == ["videos", "meta"]


def test_failed_video_write_commits_nothing(tmp_path, monkeypatch):
    store = OutputStore(str(tmp_path))

    def failing_write(self, url, data):
        raise OSError("bucket unavailable")

    monkeypatch.setattr(Storage, "write_bytes_atomic", failing_write)
    with pytest.raises(OSError, match="bucket unavailable"):
        store.write_ok(SPEC, MP4, {})
    assert not store.is_done(SPEC.sample_id)
    assert not (tmp_path / "meta").exists()


def test_unserializable_metadata_is_rejected_before_writing(tmp_path):
    store = OutputStore(str(tmp_path))
    with pytest.raises(TypeError, match=f"metadata of sample {SPEC.sample_id} is not JSON-serializable"):
        store.write_ok(SPEC, MP4, {"tensor": object()})
    assert not (tmp_path / "videos").exists()


def test_failure_of_a_spec_is_recorded_and_retried(tmp_path):
    store = OutputStore(str(tmp_path))
    record = store.write_failure(SPEC, "RuntimeError: CUDA out of memory", metadata={"attempt": 1})
    assert record.status == "failed" and record.error == "RuntimeError: CUDA out of memory"
    assert store.read_record(SPEC.sample_id) == record
    assert not store.is_done(SPEC.sample_id)
    store.write_ok(SPEC, MP4, {})
    assert store.is_done(SPEC.sample_id)


def test_the_record_of_an_invalid_row_has_no_sample_id():
    spec_json = '{"name": "bad", "guidance": 9}'
    error = "sample 'bad' (s.jsonl:2): field 'guidance' must be in 0..7, got 9"
    record = OutputRecord.failed(error, name="bad", source="s.jsonl:2", spec_json=spec_json)
    assert (record.sample_id, record.status, record.name, record.source) == (None, "failed", "bad", "s.jsonl:2")
    assert record.spec_json == spec_json and record.error == error and record.finished_at


def test_failure_builds_the_record_and_writes_nothing(tmp_path):
    store = OutputStore(str(tmp_path))
    record = store.failure(SPEC, "writing the outputs failed: boom", metadata={"seed": 0}, source="a.json")
    assert (record.sample_id, record.status, record.source) == (SPEC.sample_id, "failed", "a.json")
    assert record.metadata == {"seed": 0} and record.spec_json == SPEC.to_json()
    assert os.listdir(tmp_path) == []


def test_a_deleted_video_makes_its_sample_not_done(tmp_path):
    store = OutputStore(str(tmp_path))
    store.write_ok(SPEC, MP4, {})
    os.remove(tmp_path / "videos" / f"{SPEC.sample_id}.mp4")
    record = store.read_record(SPEC.sample_id)
    assert record is not None and record.status == "ok"
    assert not store.is_done(SPEC.sample_id)


def test_a_duplicate_row_names_the_row_it_repeats(tmp_path):
    record = OutputStore(str(tmp_path)).duplicate(SPEC, source="b.jsonl:9", first_source="a.jsonl:1")
    assert (record.status, record.source, record.metadata) == ("duplicate", "b.jsonl:9", {"duplicate_of": "a.jsonl:1"})
    assert record.video_url == str(tmp_path / "videos" / f"{SPEC.sample_id}.mp4")


def test_damaged_record_is_not_done(tmp_path):
    store = OutputStore(str(tmp_path))
    Storage().write_bytes_atomic(store.meta_url(SPEC.sample_id), b"{not json")
    assert store.read_record(SPEC.sample_id) is None
    assert not store.is_done(SPEC.sample_id)


def test_run_table_round_trip(tmp_path):
    store = OutputStore(str(tmp_path))
    records = [
        store.write_ok(SPEC, MP4, {"seed": 0}),
        store.skipped(OTHER, source="b.json:0"),
        OutputRecord.failed("ValueError: bad", name="x", spec_json="{}"),
    ]
    url = store.write_run_table("run-1", records)
    assert url == str(tmp_path / "runs" / "run-1" / "metadata.parquet")
    assert store.read_run_table("run-1") == records
    assert [r.status for r in records] == ["ok", "skipped", "failed"]
    assert not store.is_done(OTHER.sample_id)  # skipped() writes nothing


def test_empty_run_table_has_the_schema(tmp_path):
    import pyarrow.parquet as pq

    store = OutputStore(str(tmp_path))
    url = store.write_run_table("empty", [])
    assert pq.read_schema(url) == outputs.RUN_TABLE_SCHEMA
    assert store.read_run_table("empty") == []


@pytest.mark.parametrize("run_id", ["", "a/b", ".."])
def test_bad_run_id(tmp_path, run_id):
    with pytest.raises(ValueError, match="run_id must be a non-empty name without '/'"):
        OutputStore(str(tmp_path)).write_run_table(run_id, [])


def test_record_json_round_trip():
    record = OutputRecord(sample_id="a-0", name="a", status="ok", metadata={"x": [1, 2]})
    assert OutputRecord.from_json(record.to_json()) == record
    assert OutputRecord.from_row(record.to_row()) == record


def test_s3_store(s3_bucket):
    root, options = s3_bucket
    store = OutputStore(f"{root}/out", Storage(options))
    assert not store.is_done(SPEC.sample_id)
    ok = store.write_ok(SPEC, MP4, {"seed": 0})
    failed = store.write_failure(OTHER, "boom")
    assert ok.video_url == f"{root}/out/videos/{SPEC.sample_id}.mp4"
    assert Storage(options).read_bytes(ok.video_url) == MP4
    assert store.is_done(SPEC.sample_id) and not store.is_done(OTHER.sample_id)
    store.write_run_table("r1", [ok, failed])
    assert store.read_run_table("r1") == [ok, failed]
