"""The batch job's check stage and plan without Ray: generations, the job-wide override, resume per generation, the
job's weights in each sample, the plan's parsed specs, its grouping by adapter set and prompt order."""

import json

import pyarrow as pa
import pytest

from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.limits import SpecLimits
from cosmos_ray.core.outputs import OutputStore
from cosmos_ray.core.registry import DEFAULT_MODEL
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.storage import Storage
from pipelines.batch import CHECK_COLUMNS, INVALID, PENDING, SKIPPED, BatchConfig, check_rows
from pipelines.batch.plan import adapter_set, plan


def spec(name: str, **fields) -> dict:
    return {"inference_type": "text2world", "name": name, "prompt": "A square.", "cosmos_ray_num_frames": 9, **fields}


def manifest(*specs: dict) -> pa.Table:
    rows = [{"spec_json": json.dumps(s), "name": s["name"], "source": f"s.jsonl:{i + 1}"} for i, s in enumerate(specs)]
    return pa.Table.from_pylist(rows).select(CHECK_COLUMNS)


def check(tmp_path, table: pa.Table, num_generations: int | None = None, limits: SpecLimits | None = None) -> list:
    limits = limits or SpecLimits()
    checked = check_rows(
        table,
        output=str(tmp_path),
        storage=Storage(),
        limits=limits,
        model=DEFAULT_MODEL,
        num_generations=num_generations,
    )
    return checked.to_pylist()


def test_each_generation_is_a_sample_with_its_seed(tmp_path):
    rows = check(tmp_path, manifest(spec("a", seed=3, num_generations=3), spec("b")))
    assert [(r["source"], r["status"]) for r in rows] == [("s.jsonl:1", PENDING)] * 3 + [("s.jsonl:2", PENDING)]
    specs = [GenerationSpec.from_dict(json.loads(r["spec_json"])) for r in rows]
    assert [(s.name, s.seed, s.num_generations) for s in specs] == [("a", 3, 1), ("a", 4, 1), ("a", 5, 1), ("b", 0, 1)]
    assert [r["sample_id"] for r in rows] == [s.sample_id for s in specs] and len({s.sample_id for s in specs}) == 4


def test_the_job_override_replaces_every_specs_own(tmp_path):
    rows = check(tmp_path, manifest(spec("a", num_generations=5), spec("b")), num_generations=2)
    assert [(r["name"], json.loads(r["spec_json"])["seed"]) for r in rows] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]


def test_an_override_a_spec_cannot_take_makes_its_row_invalid(tmp_path):
    rows = check(tmp_path, manifest(spec("last-seed", seed=2**32 - 1), spec("ok")), num_generations=2)
    assert [r["status"] for r in rows] == [INVALID, PENDING, PENDING]
    assert rows[0]["sample_id"] is None
    assert rows[0]["error"].startswith("sample 'last-seed' (s.jsonl:1): field 'num_generations' needs seeds")


def test_generations_resume_one_by_one(tmp_path):
    data = spec("a", num_generations=3)
    second = GenerationSpec.from_dict(data).generations()[1]
    OutputStore(str(tmp_path)).write_ok(second, b"mp4", {})
    assert [r["status"] for r in check(tmp_path, manifest(data))] == [PENDING, SKIPPED, PENDING]
    # More generations later: those already made stay done.
    assert [r["status"] for r in check(tmp_path, manifest(data), num_generations=4)] == [PENDING, SKIPPED] + [
        PENDING
    ] * 2


def test_a_spec_asking_for_more_generations_than_the_limit_is_invalid(tmp_path):
    rows = check(tmp_path, manifest(spec("many", num_generations=3)), limits=SpecLimits(max_num_generations=2))
    assert [r["status"] for r in rows] == [INVALID]
    assert rows[0]["error"] == "sample 'many' (s.jsonl:1): field 'num_generations' must be at most 2 here, got 3"
    with pytest.raises(ValueError, match=r"num_generations must be in 1..2 \(the limit\), got 3"):
        BatchConfig(manifest="m", output="o", num_generations=3, limits=SpecLimits(max_num_generations=2))


def test_the_plan_holds_parsed_specs_ordered_by_prompt(tmp_path):
    data = [spec("z", prompt="B."), spec("y", prompt="A.", num_generations=2), spec("done"), spec("z", prompt="B.")]
    store = OutputStore(str(tmp_path))
    store.write_ok(GenerationSpec.from_dict(data[2]), b"mp4", {})
    checked = check(tmp_path, manifest(*data))  # 0: z, 1-2: y's generations, 3: done, 4: z again
    planned = plan(checked, store, "2B/post-trained")
    assert [(p.row, p.spec.name, p.spec.seed) for p in planned.pending] == [(1, "y", 0), (2, "y", 1), (0, "z", 0)]
    for sample in planned.pending:
        assert isinstance(sample.spec, GenerationSpec) and sample.sample_id == sample.spec.sample_id
        assert sample.to_row()["spec_json"] == checked[sample.row]["spec_json"]  # the canonical JSON, unchanged
    assert {row: r.status for row, r in planned.records.items()} == {3: SKIPPED, 4: "duplicate"}
    assert planned.records[4].metadata == {"duplicate_of": "s.jsonl:1"}
    assert planned.committed == (GenerationSpec.from_dict(data[2]).sample_id,)


def test_the_job_weights_are_in_each_sample_id_and_a_row_for_another_checkpoint_is_invalid(tmp_path):
    table = manifest(spec("a"), spec("b", cosmos_ray_loras=[]), spec("c", cosmos_ray_checkpoint="/ckpt/other.pt"))
    rows = check_rows(
        table,
        output=str(tmp_path),
        storage=Storage(),
        limits=SpecLimits(),
        model=DEFAULT_MODEL,
        checkpoint="/ckpt/mine.pt",
        loras=(LoraRef("/loras/a.pt"),),
    ).to_pylist()
    a, b = (GenerationSpec.from_dict(json.loads(r["spec_json"])) for r in rows[:2])
    assert (a.cosmos_ray_checkpoint, a.cosmos_ray_loras) == ("/ckpt/mine.pt", (LoraRef("/loras/a.pt"),))
    assert (b.cosmos_ray_checkpoint, b.cosmos_ray_loras) == ("/ckpt/mine.pt", ())
    assert [r["sample_id"] for r in rows[:2]] == [a.sample_id, b.sample_id]
    assert a.sample_id != GenerationSpec.from_dict(spec("a")).sample_id  # the stock weights' sample is another
    assert rows[2]["status"] == INVALID
    assert rows[2]["error"].startswith("sample 'c': field 'cosmos_ray_checkpoint' names checkpoint '/ckpt/other.pt'")


def test_the_plan_groups_samples_by_adapter_set(tmp_path):
    def loras(*paths_and_scales) -> list[dict]:
        return [{"path": path, "scale": scale} for path, scale in paths_and_scales]

    data = [
        spec("1", prompt="A.", cosmos_ray_loras=loras(("/b.pt", 1))),
        spec("2", prompt="A."),
        spec("3", prompt="B.", cosmos_ray_loras=loras(("/a.pt", 1), ("/b.pt", 1))),
        spec("4", prompt="C.", cosmos_ray_loras=loras(("/b.pt", 1))),
        spec("5", prompt="B.", cosmos_ray_loras=loras(("/b.pt", 0.5))),
        spec("6", prompt="A.", cosmos_ray_loras=loras(("/b.pt", 1), ("/a.pt", 1))),  # the set of 3, in another order
        spec("7", prompt="B."),
        spec("8", prompt="B.", cosmos_ray_loras=loras(("/b.pt", 1))),
    ]
    pending = plan(check(tmp_path, manifest(*data)), OutputStore(str(tmp_path)), "2B/post-trained").pending
    # no adapters first, then each set together (by path, then scale), by prompt within a set
    assert [p.spec.name for p in pending] == ["2", "7", "6", "3", "5", "1", "8", "4"]
    assert [adapter_set(p.spec) for p in pending] == sorted(adapter_set(p.spec) for p in pending)
