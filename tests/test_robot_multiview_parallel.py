"""The camera net of `2B/robot/multiview-agibot` context-parallel (2 gloo ranks): the rays are split with their frames,
and the velocity is the single process's; and `bench/robot_multiview.py --smoke` runs."""

from __future__ import annotations

import json
import os
from functools import partial
from typing import cast

import torch
import torch.multiprocessing as mp

from bench import robot_multiview as bench
from cosmos_ray.models.camera_dit import CameraBlock, CameraDiT, CameraDiTConfig
from cosmos_ray.parallel import ParallelConfig, ParallelContext, ParallelDiT


def _net_and_inputs() -> tuple[CameraDiT, dict]:
    cfg = CameraDiTConfig(**{**vars(CameraDiTConfig.preset("tiny")), "state_t": 2})
    torch.manual_seed(0)
    net = CameraDiT(cfg).eval().requires_grad_(False)
    for block in net.blocks:  # a visible camera term (the tiny init is small)
        torch.nn.init.normal_(cast(CameraBlock, block).cam_encoder.weight, std=0.5)
    return net, bench.step_inputs(cfg, (6, 4, 6), torch.device("cpu"), torch.float32)


def _worker(rank: int, world_size: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    net, inputs = _net_and_inputs()
    init = partial(ParallelContext.init, rank, world_size, backend="gloo")
    results = {}
    for i, config in enumerate(ParallelConfig.layouts(world_size)):
        with init(f"file://{out_dir}/rendezvous-{i}", config=config) as ctx, torch.no_grad():
            results[str(config)] = ParallelDiT(net, ctx)(**inputs)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


def test_every_layout_gives_the_single_process_velocity(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2)
    net, inputs = _net_and_inputs()
    with torch.no_grad():
        expected = net(**inputs)
        without_cameras = net(**{**inputs, "camera": torch.zeros_like(inputs["camera"])})
    assert not torch.allclose(expected, without_cameras, atol=1e-3)
    for rank in range(2):
        results = torch.load(tmp_path / f"rank{rank}.pt")
        assert len(results) == len(ParallelConfig.layouts(2))
        for layout, velocity in results.items():
            torch.testing.assert_close(velocity, expected, rtol=1e-5, atol=1e-5, msg=layout)


def test_bench_smoke_runs_one_guided_step(capsys):
    bench.main(["--device", "cpu", "--smoke", "--warmup", "0", "--iters", "1"])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["name"] == "robot_multiview_step" and record["latent"] == [6, 4, 6] and record["batch"] == 2
    assert record["step_ms"] > 0 and record["world_size"] == 1
