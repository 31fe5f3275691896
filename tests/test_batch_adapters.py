"""Per-row LoRA adapters in a batch job on a local Ray (tiny preset, adapter files the test writes).

The job has a default adapter (`--lora`); rows name their own, none (`[]`), or leave it to the job, and one
names another checkpoint. Each row is generated with its adapters merged into the DiT (the engine's records name
them with their files' hashes, and the three videos differ), the sample ids and the records name them, and a
row whose adapter changes is generated again on the next run, never skipped as done.
"""

import json

import pytest

from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.outputs import OK, OutputStore
from pipelines.batch import BatchConfig, run
from pipelines.group import GroupConfig
from tests.adapter_helpers import file_sha256, write_lora
from tests.batch_helpers import manifest_row, spec, write_manifest

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it


def adapter_rows(own: str, scale: float) -> list[dict]:
    """Three rows that differ only in their adapters (same name, prompt and seed), and one for another checkpoint."""
    return [
        spec("robot"),  # the job's adapters
        spec("robot", cosmos_ray_loras=[{"path": own, "scale": scale}]),
        spec("robot", cosmos_ray_loras=[]),  # none, although the job has some
        spec("elsewhere", cosmos_ray_checkpoint="/checkpoints/other/model.pt"),
    ]


def run_job(tmp_path, rows: list[dict], default: str) -> tuple:
    manifest = str(tmp_path / "manifest.parquet")
    write_manifest(manifest, [manifest_row(data, f"specs.jsonl:{i + 1}") for i, data in enumerate(rows)])
    engine = EngineOptions(loras=(LoraRef(default),))
    config = BatchConfig(manifest=manifest, output=str(tmp_path / "out"), groups=1, group=GroupConfig(engine=engine))
    summary = run(config)
    return summary, OutputStore(config.output).read_run_table(summary.run_id)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("adapters")
    return {name: write_lora(folder / f"{name}.pt", seed=seed) for seed, name in enumerate(("default", "own"))}


@pytest.fixture(scope="module")
def first_run(ray_session, adapters, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("adapter-job")
    summary, table = run_job(tmp_path, adapter_rows(adapters["own"], 0.5), adapters["default"])
    return {"tmp_path": tmp_path, "summary": summary, "table": table}


def test_each_row_is_generated_with_its_adapters(first_run, adapters):
    summary, table = first_run["summary"], first_run["table"]
    assert (summary.ok, summary.failed, summary.skipped) == (3, 1, 0)
    default, own = adapters["default"], adapters["own"]
    expected = [
        [{"path": default, "scale": 1.0, "sha256": file_sha256(default)}],
        [{"path": own, "scale": 0.5, "sha256": file_sha256(own)}],
        [],
    ]
    assert [record.status for record in table[:3]] == [OK] * 3
    assert [record.metadata.get("loras", []) for record in table[:3]] == expected
    store = OutputStore(str(first_run["tmp_path"] / "out"))
    videos = [store.storage.read_bytes(record.video_url) for record in table[:3]]
    assert len(set(videos)) == 3  # the adapters changed the weights the videos were made with


def test_the_sample_ids_and_specs_name_the_adapters(first_run, adapters):
    table = first_run["table"]
    assert len({record.sample_id for record in table[:3]}) == 3  # same name, prompt and seed: the adapters differ
    specs = [json.loads(record.spec_json) for record in table[:3]]
    assert [s["cosmos_ray_loras"] for s in specs] == [
        [{"path": adapters["default"], "scale": 1.0}],
        [{"path": adapters["own"], "scale": 0.5}],
        [],
    ]
    assert all("cosmos_ray_checkpoint" not in s for s in specs)  # the stock weights


def test_a_row_for_another_checkpoint_is_a_bad_row(first_run):
    elsewhere = first_run["table"][3]
    assert elsewhere.status == "failed" and elsewhere.sample_id is None
    assert "field 'cosmos_ray_checkpoint' names checkpoint '/checkpoints/other/model.pt'" in elsewhere.error
    assert "--checkpoint-path /checkpoints/other/model.pt" in elsewhere.error


def test_a_changed_adapter_is_generated_again(first_run, adapters):
    rows = adapter_rows(adapters["own"], 0.75)[:3]  # the own adapter's scale changes
    summary, table = run_job(first_run["tmp_path"], rows, adapters["default"])
    assert (summary.ok, summary.skipped) == (1, 2)
    assert [record.status for record in table] == [  # resumed: the rows whose adapters did not change
        "skipped",
        OK,
        "skipped",
    ]
    assert table[1].metadata["loras"] == [
        {"path": adapters["own"], "scale": 0.75, "sha256": file_sha256(adapters["own"])}
    ]
    assert table[1].sample_id != first_run["table"][1].sample_id
