"""Loading DiT weights: an official training checkpoint (EMA preferred), diffusers' layout from a sharded
folder, and the report of missing, unexpected and misshaped keys."""

from __future__ import annotations

import pytest
import torch

from cosmos_ray.models.dit import MiniTrainDiT, load_dit, official_to_diffusers_key
from cosmos_ray.models.weights import CheckpointMismatchError, rename_keys
from tests.dit_helpers import TINY, random_dit, random_inputs


def official_checkpoint(regular: MiniTrainDiT, ema: MiniTrainDiT) -> dict:
    """A training-style checkpoint: regular and EMA nets, counters and extra state, nested under "model"."""
    state = {f"net.{k}": v for k, v in regular.state_dict().items()}
    state |= {f"net_ema.{k}": v for k, v in ema.state_dict().items()}
    state |= {
        "net.accum_video_sample_counter": torch.tensor(3),
        "net.blocks.0.self_attn.q_norm._extra_state": torch.tensor(0),
    }
    return {"model": state}


def test_load_official_checkpoint_prefers_ema(tmp_path):
    regular, ema = random_dit(seed=1), random_dit(seed=2)
    path = tmp_path / "model.pt"
    torch.save(official_checkpoint(regular, ema), path)

    loaded = load_dit(path, TINY, dtype=torch.float32)
    inputs = random_inputs(TINY, 1, 3, 8, 12)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs), ema(**inputs))


def test_load_diffusers_layout_from_sharded_folder(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    model = random_dit()
    state = rename_keys(model.state_dict(), official_to_diffusers_key)
    keys = sorted(state)
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2 :])):
        safetensors.save_file(
            {k: state[k].contiguous() for k in part},
            str(tmp_path / f"diffusion_pytorch_model-0000{i + 1}-of-00002.safetensors"),
        )

    loaded = load_dit(tmp_path, TINY, dtype=torch.float32)
    inputs = random_inputs(TINY, 2, 3, 8, 12)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs), model(**inputs))


def test_load_reports_missing_unexpected_and_misshaped_keys():
    state = random_dit().state_dict()
    del state["blocks.1.mlp.layer2.weight"]
    state["blocks.0.extra.weight"] = torch.zeros(1)
    state["final_layer.linear.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointMismatchError) as error:
        load_dit(state, TINY)
    message = str(error.value)
    assert "missing keys (1)" in message and "blocks.1.mlp.layer2.weight" in message
    assert "unexpected keys (1)" in message and "blocks.0.extra.weight" in message
    assert "final_layer.linear.weight: file (3, 3)" in message
