"""The robot action benchmark (`bench.robot_action`) runs end to end with the tiny preset on the CPU."""

from __future__ import annotations

import json


def test_the_benchmark_runs_with_tiny_shapes(tmp_path):
    from bench.robot_action import main

    out = tmp_path / "r.jsonl"
    main(["--device", "cpu", "--smoke", "--warmup", "0", "--iters", "1", "--chunks", "2", "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["guidance"], r["passes_per_step"], r["chunks"]) for r in records] == [(7, 2, 2), (0, 1, 2)]
    assert all(r["episodes_per_gpu_hour"] > 0 and r["frames"] == 25 for r in records)
