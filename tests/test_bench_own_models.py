"""The own-models benchmark (`bench.own_models`) runs end to end with tiny shapes on the CPU."""

from __future__ import annotations

import json


def test_the_benchmark_runs_with_tiny_shapes(tmp_path):
    from bench.own_models import main

    out = tmp_path / "r.jsonl"
    main(["--device", "cpu", "--smoke", "--warmup", "0", "--iters", "1", "--out", str(out), "--workdir", str(tmp_path)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in records if r["name"] == "load"] == [
        "stock",
        "checkpoint_path cold",
        "checkpoint_path warm",
    ]
    assert len([r for r in records if r["name"] == "dit_step"]) == 3
    assert len([r for r in records if r["name"] == "switch"]) == 6
