"""The batch job's sinks without Ray: the registry, the run's sink order, what a writer task gets of a sink, and
the writer stage's contract with them (every sink writes before the files sink commits; a failing sink fails
its sample uncommitted). tests/test_batch_sinks.py runs a registered sink through a whole job on Ray."""

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cosmos_ray.core.outputs import OutputStore
from cosmos_ray.core.shards import ShardConfig
from cosmos_ray.core.storage import Storage
from pipelines.batch import GENERATED_SCHEMA, SINKS, FilesSink, Sink, SinkConfig, WebDatasetSink, write_outputs
from pipelines.batch.sinks import GeneratedSample, make_sinks, register_sink


class CheckingSink(Sink):
    """Not registered: a sink can also be given as an instance. Notes whether the sample was committed when it
    wrote, and fails samples named "refused-*"."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._driver_state = "only on the driver"

    def write(self, sample: GeneratedSample) -> None:
        if sample.spec.name.startswith("refused-"):
            raise OSError("no room for this one")
        committed = sample.store.read_record(sample.spec.sample_id) is not None
        (self.folder / f"{sample.spec.sample_id}.json").write_text(json.dumps({"committed": committed}))


def generated_row(name: str, error: str | None = None) -> dict:
    """A row of the generate stage's output for the writer: a 16x16 frame, or the sample's `error`."""
    frames = np.zeros((1, 16, 16, 3), np.uint8)
    return {
        "row": 0,
        "source": "s.jsonl:1",
        "spec_json": json.dumps({"inference_type": "text2world", "name": name, "prompt": "A square."}),
        "error": error,
        "blocked": None,
        "frames": b"" if error else frames.tobytes(),
        "frames_shape": [] if error else list(frames.shape),
        "fps": 16,
        "metadata_json": json.dumps({"seed": 0}),
        "generate_s": 1.0,
    }


def write(tmp_path: Path, name: str, sinks) -> dict:
    batch = pa.Table.from_pylist([generated_row(name)], schema=GENERATED_SCHEMA)
    (written,) = write_outputs(
        batch, output=str(tmp_path / "out"), storage=Storage(), run_id="r", model="2B/post-trained", sinks=sinks
    ).to_pylist()
    return written


def test_the_two_sinks_are_registered_by_name():
    assert SINKS["files"] is FilesSink and SINKS["webdataset"] is WebDatasetSink
    sink = SinkConfig("webdataset", {"config": ShardConfig(max_samples=3)}).build()
    assert isinstance(sink, WebDatasetSink) and sink.config == ShardConfig(max_samples=3)
    assert WebDatasetSink().config == ShardConfig()  # --shard-size / --shard-samples fill it in
    with pytest.raises(ValueError, match="unknown sink 'nope'; registered: .*files"):
        SinkConfig("nope").build()


def test_a_name_is_registered_once():
    class Impostor(Sink):
        pass

    with pytest.raises(ValueError, match="sink name 'files' is taken by pipelines.batch.sinks.files.FilesSink"):
        register_sink("files")(Impostor)
    assert SINKS["files"] is FilesSink


def test_the_files_sink_is_always_on_and_last(tmp_path):
    shards = WebDatasetSink()
    assert [type(s) for s in make_sinks([])] == [FilesSink]
    sinks = make_sinks([FilesSink(), shards, SinkConfig("webdataset")])
    assert [type(s) for s in sinks] == [WebDatasetSink, WebDatasetSink, FilesSink] and sinks[0] is shards


def test_a_writer_task_gets_the_configuration_without_the_driver_state(tmp_path):
    copy = pickle.loads(pickle.dumps(CheckingSink(tmp_path)))
    assert copy.folder == tmp_path and not hasattr(copy, "_driver_state")


def test_every_sink_writes_before_the_files_sink_commits(tmp_path):
    written = write(tmp_path, "fine", make_sinks([CheckingSink(tmp_path)]))
    assert written["status"] == "ok" and written["video_url"].endswith(f"videos/{written['sample_id']}.mp4")
    assert json.loads((tmp_path / f"{written['sample_id']}.json").read_text()) == {"committed": False}
    assert OutputStore(str(tmp_path / "out")).is_done(written["sample_id"])


def test_a_sink_that_fails_fails_its_sample_uncommitted(tmp_path):
    written = write(tmp_path, "refused-x", make_sinks([CheckingSink(tmp_path)]))
    assert (written["status"], written["error"]) == (
        "failed",
        "writing the outputs failed: OSError: no room for this one",
    )
    store = OutputStore(str(tmp_path / "out"))
    assert store.read_record(written["sample_id"]) is None  # no meta: the next run generates it again
    assert not Path(store.video_url(written["sample_id"])).exists()


def test_without_a_committing_sink_the_sample_fails(tmp_path):
    written = write(tmp_path, "nowhere", [CheckingSink(tmp_path)])
    assert written["status"] == "failed" and "no sink committed sample" in written["error"]
