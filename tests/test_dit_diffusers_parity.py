"""DiT parity with diffusers' CosmosTransformer3DModel holding the same weights (`tests.oracles.diffusers_dit`):
text, image and video conditioning, odd and non-square grids, RoPE extrapolation and fps modulation; and the
benchmark that races the same twin."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import torch

from tests.dit_helpers import TINY, random_dit, random_inputs, rel_error


@pytest.fixture(scope="module")
def diffusers_dit():
    """`tests.oracles.diffusers_dit`, skipped without diffusers (bench.dit_step races the same twin)."""
    pytest.importorskip("diffusers")
    from tests.oracles import diffusers_dit

    return diffusers_dit


PARITY_CASES: dict[str, tuple[dict[str, Any], int, int, int, int, bool, int, float | None]] = {
    # name: (config overrides, batch, latent frames, height, width, per-frame timesteps, conditional frames, fps)
    "t2w-b1": ({}, 1, 3, 8, 12, False, 0, None),
    "v2w-b2-odd-nonsquare": ({}, 2, 5, 6, 10, True, 2, None),
    "i2w-b2-square": ({}, 2, 3, 10, 10, True, 1, None),
    "rope-t-extrapolation": (
        dict(rope_t_extrapolation_ratio=2.0, rope_h_extrapolation_ratio=1.0),
        1,
        4,
        8,
        8,
        False,
        0,
        None,
    ),
    "fps-modulation-16": (dict(rope_enable_fps_modulation=True), 2, 4, 8, 12, False, 1, 16),
    "fps-modulation-30": (dict(rope_enable_fps_modulation=True), 2, 4, 8, 12, False, 1, 30),
}


@pytest.mark.parametrize("case", PARITY_CASES)
def test_forward_matches_diffusers(diffusers_dit, case):
    overrides, b, t, h, w, per_frame, cond_frames, fps = PARITY_CASES[case]
    cfg = dataclasses.replace(TINY, **overrides)
    model = random_dit(cfg)
    twin = diffusers_dit(model)
    inputs = random_inputs(cfg, b, t, h, w)
    if per_frame:
        inputs["timesteps"] = torch.rand(b, t) * 1000
        inputs["timesteps"][:, :cond_frames] = 0.1  # the reference's conditional-frame timestep
    condition_mask = torch.zeros(b, 1, t, h, w)
    condition_mask[:, :, :cond_frames] = 1.0
    padding_mask = torch.zeros(1, 1, 8 * h, 8 * w)  # pixel resolution: both resize it to the latent grid
    padding_mask[..., : 8 * h // 3, : 8 * w // 2] = 1.0

    with torch.no_grad():
        ours = model(
            **inputs, fps=fps, padding_mask=padding_mask, condition_mask=condition_mask if cond_frames else None
        )
        diffusers_timesteps = inputs["timesteps"] * cfg.timestep_scale
        if per_frame:
            diffusers_timesteps = diffusers_timesteps.view(b, 1, t, 1, 1)
        reference = twin(
            inputs["x"],
            diffusers_timesteps,
            inputs["crossattn_emb"],
            fps=fps,
            condition_mask=condition_mask,
            padding_mask=padding_mask,
            return_dict=False,
        )[0]
    assert ours.shape == reference.shape == (b, cfg.out_channels, t, h, w)
    assert rel_error(ours, reference) < 1e-5


def test_benchmark_smoke_runs(diffusers_dit, capsys, tmp_path):
    from bench.dit_step import main

    main(
        [
            "--device",
            "cpu",
            "--smoke",
            "--batch",
            "2",
            "--warmup",
            "0",
            "--iters",
            "1",
            "--out",
            str(tmp_path / "r.jsonl"),
        ]
    )
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    forwards = {r["impl"]: r for r in records if r["name"] == "dit_forward"}
    assert set(forwards) == {"ours", "diffusers"}
    assert forwards["diffusers"]["max_rel_diff_vs_ours"] < 1e-5
    assert any(r["name"] == "dit_floor" for r in records)
    assert capsys.readouterr().out.count("\n") == len(records)
