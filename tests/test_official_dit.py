"""cosmos-ray's DiT against the official one (tests/golden/dit.json, written by tools/official_golden.py: the
official MinimalV1LVGDiT built from each experiment's composed net config with the tiny preset's widths and the
weights of `random_dit_weights`, CPU stand-ins for its four GPU pieces; see docs/reference-notes.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cosmos_ray.conditioning import normalize_pixels
from cosmos_ray.core.registry import get_model
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
from tests.test_official_golden import unpack
from tools.golden.dit import dit_inputs, random_dit_weights

GOLDEN = json.loads((Path(__file__).resolve().parent / "golden" / "dit.json").read_text())
MODELS = {"2B": "2B/post-trained", "14B": "14B/pre-trained", "2B-distilled": "2B/distilled"}


def our_dit(setting: str, dtype: torch.dtype) -> MiniTrainDiT:
    cfg = DiTConfig.of_model(get_model(MODELS[setting]), "tiny")
    model = MiniTrainDiT(cfg)
    state = model.state_dict()
    state.update(random_dit_weights({name: tuple(value.shape) for name, value in state.items()}))
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).cast(dtype)


def run(setting: str, dtype: torch.dtype) -> torch.Tensor:
    model = our_dit(setting, dtype)
    inputs = dit_inputs(model.cfg.crossattn_proj_in_channels)
    timesteps = inputs["timesteps"]
    if not model.cfg.fp32_modulation:  # the distilled sampler hands the net its timestep in the model dtype
        timesteps = timesteps.to(dtype)
    with torch.no_grad():
        return model(
            inputs["x"].to(dtype),
            timesteps,
            inputs["crossattn_emb"].to(dtype),
            padding_mask=inputs["padding_mask"].to(dtype),
            condition_mask=inputs["condition_mask"].to(dtype),
        )


def test_fixture_settings_are_the_registry_models():
    for setting, case in GOLDEN["cases"].items():
        cfg = DiTConfig.of_model(get_model(MODELS[setting.split("/")[0]]))
        assert cfg.fp32_modulation == case["use_wan_fp32_strategy"] and cfg.timestep_scale == case["timestep_scale"]


@pytest.mark.parametrize("setting", sorted(MODELS))
def test_dit_matches_official_in_float32(setting):
    official = unpack(GOLDEN["cases"][f"{setting}/float32"]["output"])
    ours = run(setting, torch.float32)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, official, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("setting", sorted(MODELS))
def test_dit_matches_official_in_bf16(setting):
    official = unpack(GOLDEN["cases"][f"{setting}/bfloat16"]["output"])
    ours = run(setting, torch.bfloat16)
    assert ours.dtype == official.dtype
    assert torch.equal(ours, official)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_pixel_normalization_matches_official(dtype):
    """The conditioning pixels' uint8 -> [-1, 1] step, all 256 levels (tests/golden/pixel_norm.json)."""
    official = unpack(
        json.loads((Path(__file__).resolve().parent / "golden" / "pixel_norm.json").read_text())["cases"][dtype]
    )
    ours = normalize_pixels(torch.arange(256, dtype=torch.uint8), getattr(torch, dtype))
    assert ours.dtype == official.dtype and torch.equal(ours, official)
