"""The multiview benchmark (`bench.multiview`) runs end to end with tiny shapes on the CPU, in a group of two
spawned gloo ranks: every part, both layouts of two ranks, and the projection of each."""

from __future__ import annotations

import json


def test_the_benchmark_runs_in_a_group_of_two_with_tiny_shapes(tmp_path):
    from bench.multiview import main

    out = tmp_path / "r.jsonl"
    main(["--device", "cpu", "--smoke", "--gpus", "2", "--warmup", "0", "--iters", "1", "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["name"] for r in records].count("multiview_text") == 1
    assert [r["name"] for r in records].count("multiview_decode") == 1
    steps = [r for r in records if r["name"] == "multiview_step"]
    assert [r["layout"] for r in steps] == ["cfg 2 x ulysses 1", "cfg 1 x ulysses 2"]
    assert all(r["world_size"] == 2 and r["model"] == "2B/auto/multiview" and r["ms"] > 0 for r in steps)
    projections = [r for r in records if r["name"] == "multiview_projection"]
    assert [r["layout"] for r in projections] == ["cfg 2 x ulysses 1", "cfg 1 x ulysses 2"]
    for line in projections:
        total = line["text_encode_s"] + line["sampling_s"] + line["decode_s"]  # each rounded
        assert line["evaluations"] == 35 and abs(line["total_s"] - total) < 0.2
        assert abs(line["clips_per_gpu_hour"] * line["total_s"] * 2 / 3600 - 1) < 0.02
