"""The batch job reading its manifest on a local Ray: rows that need no GPU (a limit, invalid, duplicate and
already-done rows, each named in the log and the run table), a table that is not a manifest, and specs the
model cannot generate, refused by the check stage."""

import json
import logging
from functools import partial

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cosmos_ray.core.limits import SpecLimits
from cosmos_ray.core.manifest import MANIFEST_SCHEMA
from cosmos_ray.core.outputs import OutputStore
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.storage import Storage
from pipelines.batch import BatchConfig, check_rows, run
from pipelines.group import GroupConfig
from tests.batch_helpers import manifest_row, spec, write_manifest

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it


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


def test_a_table_without_the_manifest_columns_is_refused(ray_session, tmp_path):
    manifest = tmp_path / "not-a-manifest.parquet"
    pq.write_table(pa.table({"spec_json": [json.dumps(spec("a"))]}), manifest)
    with pytest.raises(ValueError, match="not-a-manifest.parquet is not a cosmos-ray manifest: missing column"):
        run(BatchConfig(manifest=str(manifest), output=str(tmp_path / "out"), group=GroupConfig()))


def test_the_check_stage_refuses_specs_the_model_cannot_generate(tmp_path):
    rows = [manifest_row(spec("t2w"), "a:0"), manifest_row(spec("i2w", "image2world", input_path="/in/x.png"), "a:1")]
    batch = pa.Table.from_pylist(rows).select(["spec_json", "name", "source"])
    check = partial(check_rows, batch, output=str(tmp_path), storage=Storage(), limits=SpecLimits())
    checked = check(model="2B/distilled").to_pylist()
    assert [row["status"] for row in checked] == ["pending", "invalid"]
    assert "field 'inference_type' image2world is not supported by model 2B/distilled" in checked[1]["error"]
    checked = check(model="2B/post-trained").to_pylist()
    assert [row["status"] for row in checked] == ["pending", "pending"]
