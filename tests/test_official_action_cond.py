"""cosmos-ray's action-conditioned DiT against the official one (tests/golden/action_cond.json, written by
tools/official_golden.py: the official ActionChunkConditionedMinimalV1LVGDiT built from the released
2B/robot/action-cond checkpoint's composed net config with the `dit` fixture's tiny widths, 4 latent frames, 12
actions of 7 values and the weights of `random_dit_weights`).

Float32 results are compared within 1e-5 like the base DiT's (`tests/test_official_dit.py`: same arithmetic, but
the official net and ours may group a GEMM's batch differently); bf16 results, which is what the released bf16
checkpoint runs in, must be bit-identical.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from cosmos_ray.models.action_dit import ActionDiT, ActionDiTConfig
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT, load_dit
from cosmos_ray.models.weights import CheckpointMismatchError, drop_training_entries
from tests.test_official_golden import unpack
from tools.golden.action_cond import CASES, action_inputs
from tools.golden.dit import random_dit_weights

GOLDEN = json.loads((Path(__file__).resolve().parent / "golden" / "action_cond.json").read_text())
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def our_net(dtype: torch.dtype = torch.float32) -> ActionDiT:
    model = ActionDiT(ActionDiTConfig.preset("tiny"))
    state = model.state_dict()
    state.update(random_dit_weights({name: tuple(value.shape) for name, value in state.items()}))
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).cast(dtype)


def case_inputs(case: str, model: ActionDiT) -> dict[str, torch.Tensor]:
    batch, conditional_frames = CASES[case]
    return action_inputs(batch, conditional_frames, model.cfg.crossattn_proj_in_channels)


def run(model: ActionDiT, case: str, dtype: torch.dtype) -> torch.Tensor:
    inputs = case_inputs(case, model)
    with torch.no_grad():
        return model(
            inputs["x"].to(dtype),
            inputs["timesteps"],
            inputs["crossattn_emb"].to(dtype),
            padding_mask=inputs["padding_mask"].to(dtype),
            condition_mask=inputs["condition_mask"].to(dtype),
            actions=inputs["actions"].to(dtype),
        )


def test_config_is_the_released_net():
    """ActionDiTConfig() holds the composed config of the released checkpoint's experiment."""
    official, ours = GOLDEN["config"], ActionDiTConfig()
    compared = [field.name for field in dataclasses.fields(ActionDiTConfig) if field.name in official]
    assert len(compared) >= 20
    for name in compared:
        assert getattr(ours, name) == official[name], name
    assert ours.fp32_modulation == official["use_wan_fp32_strategy"]
    assert official.get("hidden_dim_in_action_embedder") is None and ours.action_hidden_features == 8192
    assert ours.num_actions == official["num_action_per_chunk"] == 12
    assert ours.state_t == GOLDEN["state_t_of_the_model"] == 4
    assert list(ours.video_size) == GOLDEN["video_size"] == [256, 320]
    assert GOLDEN["net_class"].endswith(".ActionChunkConditionedMinimalV1LVGDiT")
    # what the net's structure assumes of the flags it does not model
    assert official["concat_padding_mask"] and official["use_adaln_lora"] and official["use_crossattn_projection"]
    assert not official["extra_per_block_abs_pos_emb"] and official["pos_emb_cls"] == "rope3d"


def test_tiny_preset_has_the_fixture_widths():
    tiny = ActionDiTConfig.preset("tiny")
    for field, value in GOLDEN["widths"].items():
        assert getattr(tiny, field) == value, field
    assert (tiny.state_t, tiny.action_dim, tiny.num_actions) == (GOLDEN["state_t"], 7, 12)
    with pytest.raises(ValueError, match="expected one of 2B, tiny"):
        ActionDiTConfig.preset("14B")


@pytest.mark.parametrize(
    "layout, cfg", [("released", ActionDiTConfig.preset("2B")), ("tiny", ActionDiTConfig.preset("tiny"))]
)
def test_parameter_names_and_shapes_are_official(layout, cfg):
    with torch.device("meta"):
        ours = {name: list(value.shape) for name, value in ActionDiT(cfg).state_dict().items()}
    official = drop_training_entries(GOLDEN["state_dict"][layout])  # the training counters are dropped on loading
    assert ours == official


@pytest.mark.parametrize("case", sorted(CASES))
def test_velocity_matches_official_in_float32(case):
    official = unpack(GOLDEN["velocity"][f"{case}/float32"])
    ours = run(our_net(torch.float32), case, torch.float32)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, official, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_velocity_matches_official_in_bf16(case):
    official = unpack(GOLDEN["velocity"][f"{case}/bfloat16"])
    ours = run(our_net(torch.bfloat16), case, torch.bfloat16)
    assert ours.dtype == official.dtype
    assert torch.equal(ours, official)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_action_embedding_matches_official(case, dtype):
    """The action MLPs' outputs, and what reaches the timestep RMSNorm and the blocks' AdaLN-LoRA term: bit-identical
    (no GEMM batching differs here)."""
    official = {name: unpack(value) for name, value in GOLDEN["pieces"][f"{case}/{dtype}"].items()}
    model = our_net(DTYPES[dtype])
    captured: dict[str, torch.Tensor] = {}
    model.action_embedder_B_D.register_forward_hook(lambda _, __, out: captured.__setitem__("action_mlp_D", out))
    model.action_embedder_B_3D.register_forward_hook(lambda _, __, out: captured.__setitem__("action_mlp_3D", out))
    model.t_embedding_norm.register_forward_pre_hook(lambda _, args: captured.__setitem__("features", args[0]))
    model.blocks[0].register_forward_pre_hook(lambda _, args: captured.__setitem__("adaln_lora", args[2]))
    run(model, case, DTYPES[dtype])
    batch, conditional_frames = CASES[case]
    assert official["action_mlp_D"].shape == (batch, 3, 128) and official["adaln_lora"].shape == (batch, 4, 3 * 128)
    for name, value in official.items():
        assert captured[name].dtype == value.dtype, name
        assert torch.equal(captured[name], value), name


def test_first_and_conditional_frames_get_no_action():
    """Changing the actions changes only the AdaLN terms of the frames after the conditional ones."""
    model = our_net()
    inputs = case_inputs("two_frames_batch2", model)
    x, t, context, mask = inputs["x"], inputs["timesteps"], inputs["crossattn_emb"], inputs["condition_mask"]
    first = model.prepare(x, t, context, condition_mask=mask, actions=inputs["actions"])
    second = model.prepare(x, t, context, condition_mask=mask, actions=inputs["actions"] + 1)
    assert torch.equal(first.emb[:, :2], second.emb[:, :2]) and torch.equal(
        first.adaln_lora[:, :2], second.adaln_lora[:, :2]
    )
    assert not torch.equal(first.emb[:, 2:], second.emb[:, 2:])
    unmasked = model.prepare(x, t, context, actions=inputs["actions"])
    assert torch.equal(unmasked.emb[:, 0], first.emb[:, 0]) and not torch.equal(unmasked.emb[:, 1], first.emb[:, 1])


def test_official_checkpoint_loads_strictly(tmp_path):
    """A file in the released layout (EMA weights under `net.`, training counters) loads unchanged."""
    net = our_net()
    shapes = {name: tuple(shape) for name, shape in GOLDEN["state_dict"]["tiny"].items()}
    weights = {**net.state_dict(), **random_dit_weights(shapes)}
    counters = {name: torch.tensor(0) for name in shapes if name not in weights}
    assert counters  # the official net's accum_* entries
    torch.save({f"net.{name}": value for name, value in {**weights, **counters}.items()}, tmp_path / "ac_ema_bf16.pt")

    loaded = load_dit(tmp_path / "ac_ema_bf16.pt", ActionDiTConfig.preset("tiny"), dtype=torch.float32, net=ActionDiT)
    assert isinstance(loaded, ActionDiT)
    assert all(torch.equal(loaded.state_dict()[name], value) for name, value in weights.items())
    assert torch.equal(run(loaded, "first_frame", torch.float32), run(net, "first_frame", torch.float32))


def test_base_checkpoint_does_not_fit():
    base = MiniTrainDiT(DiTConfig.preset("tiny")).state_dict()
    with pytest.raises(CheckpointMismatchError, match="action_embedder_B_D.fc1.weight"):
        load_dit(base, ActionDiTConfig.preset("tiny"), dtype=torch.float32, net=ActionDiT)


def test_bad_actions_say_what_to_pass():
    model = our_net()
    inputs = case_inputs("first_frame", model)
    x, t, context = inputs["x"], inputs["timesteps"], inputs["crossattn_emb"]
    with pytest.raises(ValueError, match=r"actions: expected \(1, 12, 7\) .* got none"):
        model(x, t, context)
    with pytest.raises(ValueError, match=r"actions: expected \(1, 12, 7\) \(4 actions of 7 values for each of the 3 "):
        model(x, t, context, actions=torch.zeros(1, 3, 28))
    with pytest.raises(ValueError, match=r"got \(1, 13, 7\)"):
        model(x, t, context, actions=torch.zeros(1, 13, 7))
    with pytest.raises(ValueError, match=r"expected \(1, 4, 7\)"):  # 2 latent frames: one chunk of 4 actions
        model(x[:, :, :2], t[:, :2], context, actions=torch.zeros(1, 12, 7))
