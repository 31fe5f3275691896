"""The batch job's sinks on a local Ray: WebDataset shards of samples an earlier run made and of a shard that
could not be written, and a sink of the tests' own registered by name and run through a whole job. (The sinks
without Ray: test_sinks.py; shards and their index: test_shards.py.)"""

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from cosmos_ray.core.outputs import OutputRecord, OutputStore
from cosmos_ray.core.shards import ShardConfig, ShardStore
from cosmos_ray.core.spec import GenerationSpec
from pipelines.batch import BatchConfig, WebDatasetSink, run
from pipelines.batch.sinks import GeneratedSample, RunInfo, Sink, SinkConfig, register_sink
from pipelines.group import GroupConfig
from tests.batch_helpers import manifest_row, spec, write_manifest

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it


# --- shards of the WebDataset sink ----------------------------------------------------------------------------


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
