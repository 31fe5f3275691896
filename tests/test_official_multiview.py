"""cosmos-ray's multiview DiT against the official one (tests/golden/multiview.json, written by
tools/official_golden.py: the official MultiViewDiT built from the released 2B/auto/multiview checkpoint's composed
net config with the `dit` fixture's tiny widths, 2 latent frames per view and the weights of `random_dit_weights`;
see docs/reference-notes.md).

Float32 results are compared within 1e-5 like the base DiT's (`tests/test_official_dit.py`: same arithmetic, but
the official net and ours may group a GEMM's batch differently); bf16 results, which is what the released bf16
checkpoint runs in, must be bit-identical.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import cast

import pytest
import torch

from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT, load_dit
from cosmos_ray.models.multiview_dit import MultiviewBlock, MultiviewDiT, MultiviewDiTConfig
from cosmos_ray.models.rope import VideoRope3D
from cosmos_ray.models.weights import CheckpointMismatchError, drop_training_entries
from tests.test_official_golden import unpack
from tools.golden.dit import random_dit_weights
from tools.golden.multiview import CASES, cross_attention_inputs, multiview_inputs

GOLDEN = json.loads((Path(__file__).resolve().parent / "golden" / "multiview.json").read_text())


def fixture_config() -> MultiviewDiTConfig:
    return dataclasses.replace(MultiviewDiTConfig.preset("tiny"), state_t=GOLDEN["widths"]["state_t"])


def our_net(dtype: torch.dtype = torch.float32) -> MultiviewDiT:
    model = MultiviewDiT(fixture_config())
    state = model.state_dict()
    state.update(random_dit_weights({name: tuple(value.shape) for name, value in state.items()}))
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).cast(dtype)


def run(model: MultiviewDiT, case: str, dtype: torch.dtype) -> torch.Tensor:
    views, view_indices, context_blocks = CASES[case]
    inputs = multiview_inputs(views, context_blocks, model.cfg.crossattn_proj_in_channels)
    with torch.no_grad():
        return model(
            inputs["x"].to(dtype),
            inputs["timesteps"],
            inputs["crossattn_emb"].to(dtype),
            padding_mask=inputs["padding_mask"].to(dtype),
            condition_mask=inputs["condition_mask"].to(dtype),
            view_indices=None if view_indices is None else torch.tensor([view_indices]),
        )


def test_config_is_the_released_net():
    """MultiviewDiTConfig() holds the composed config of the released checkpoint's experiment."""
    official, ours = GOLDEN["config"], MultiviewDiTConfig()
    for field in dataclasses.fields(MultiviewDiTConfig):
        if field.name in official:
            assert getattr(ours, field.name) == official[field.name], field.name
    assert ours.fp32_modulation == official["use_wan_fp32_strategy"]
    assert ours.state_t == GOLDEN["state_t_of_the_model"] == 8
    assert (ours.model_channels, ours.num_blocks, ours.num_heads) == (2048, 28, 16)
    assert (ours.rope_h_extrapolation_ratio, ours.rope_w_extrapolation_ratio) == (3.0, 3.0)
    assert ours.rope_t_extrapolation_ratio == 8 / 24 and ours.timestep_scale == 0.001
    # what the net's structure assumes of the flags it does not model
    assert official["concat_padding_mask"] and official["concat_view_embedding"] and official["use_adaln_lora"]
    assert official["use_crossattn_projection"] and not official["extra_per_block_abs_pos_emb"]
    assert official["pos_emb_cls"] == "rope3d" and not official["rope_enable_fps_modulation"]


def test_tiny_preset_has_the_fixture_widths():
    tiny = MultiviewDiTConfig.preset("tiny")
    for field, value in GOLDEN["widths"].items():
        if field != "state_t":
            assert getattr(tiny, field) == value, field
    assert tiny.state_t == MultiviewDiTConfig().state_t and tiny.n_cameras_emb == 7


@pytest.mark.parametrize(
    "layout, cfg", [("released", MultiviewDiTConfig.preset("2B")), ("tiny", fixture_config())], ids=["2B", "tiny"]
)
def test_parameter_names_and_shapes_are_official(layout, cfg):
    with torch.device("meta"):
        ours = {name: list(value.shape) for name, value in MultiviewDiT(cfg).state_dict().items()}
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


def test_view_embedding_enters_after_the_masks():
    """The patch embedding's input: 16 latent, condition mask, padding mask, then the 7 view-embedding channels
    of each view's row (3 views with rows 0, 3, 6)."""
    model = our_net()
    captured = []
    model.x_embedder.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    run(model, "3views", torch.float32)
    official = unpack(GOLDEN["patch_input"])
    assert captured[0].shape == official.shape == (1, 25, 6, 4, 6)
    assert torch.equal(captured[0], official)
    view_channels = official[0, 18:].unflatten(1, (3, -1))  # (7, views, frames, H, W)
    rows = model.view_embeddings.weight[[0, 3, 6]].T[:, :, None, None, None]
    assert torch.equal(view_channels, rows.expand_as(view_channels))


def test_every_view_gets_the_same_rope():
    model = our_net()
    cos, sin = model.position_embedding((7 * model.cfg.state_t, 2, 3), None)
    angles = unpack(GOLDEN["rope_angles"]).reshape(cos.shape)  # official (L, 1, 1, D) angles
    assert torch.equal(cos, angles.cos()) and torch.equal(sin, angles.sin())
    one_view = cast(VideoRope3D, model.pos_embedder_options["n_cameras_1"])(model.cfg.state_t, 2, 3)
    assert torch.equal(cos, one_view[0].repeat(7, 1, 1))


def test_cross_attention_attends_per_view():
    model = our_net()
    tokens_per_view = model.cfg.state_t * 2 * 3
    inputs = cross_attention_inputs(3, tokens_per_view, model.cfg.model_channels, model.cfg.crossattn_emb_channels)
    context = inputs["context"].unflatten(1, (3, -1))  # (B, views, 512, Dc)
    attention = cast(MultiviewBlock, model.blocks[0]).cross_attn
    with torch.no_grad():
        ours = attention(inputs["x"], context, None, model.attention_fn)
        first_view_alone = attention(inputs["x"][:, :tokens_per_view], context[:, :1], None, model.attention_fn)
    torch.testing.assert_close(ours, unpack(GOLDEN["cross_attn"]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[:, :tokens_per_view], first_view_alone, rtol=1e-6, atol=1e-6)


def test_official_checkpoint_loads_strictly(tmp_path):
    """A file in the released layout (EMA weights under `net.`, training counters) loads unchanged."""
    net = our_net()
    shapes = {name: tuple(shape) for name, shape in GOLDEN["state_dict"]["tiny"].items()}
    weights = {**net.state_dict(), **random_dit_weights(shapes)}
    counters = {name: torch.tensor(0) for name in shapes if name not in weights}
    assert counters  # the official net's accum_* entries
    torch.save({f"net.{name}": value for name, value in {**weights, **counters}.items()}, tmp_path / "mv_ema_bf16.pt")

    loaded = load_dit(tmp_path / "mv_ema_bf16.pt", fixture_config(), dtype=torch.float32, net=MultiviewDiT)
    assert isinstance(loaded, MultiviewDiT)
    assert all(torch.equal(loaded.state_dict()[name], value) for name, value in weights.items())
    assert torch.equal(run(loaded, "7views", torch.float32), run(net, "7views", torch.float32))


def test_base_checkpoint_does_not_fit():
    base = MiniTrainDiT(DiTConfig.preset("tiny")).state_dict()
    with pytest.raises(CheckpointMismatchError, match="view_embeddings.weight") as error:
        load_dit(base, MultiviewDiTConfig.preset("tiny"), dtype=torch.float32, net=MultiviewDiT)
    assert "x_embedder.proj.1.weight: file (128, 72) vs model (128, 100)" in str(error.value)


def test_bad_inputs_say_what_to_pass():
    model = our_net()
    state_t, width = model.cfg.state_t, model.cfg.crossattn_proj_in_channels
    x, t = torch.zeros(1, 16, 3 * state_t, 4, 6), torch.zeros(1)
    context = torch.zeros(1, 3 * 512, width)
    with pytest.raises(ValueError, match="not 1 to 7 views of 2 frames"):
        model(torch.zeros(1, 16, 3 * state_t + 1, 4, 6), t, context)
    with pytest.raises(ValueError, match="view_indices: expected"):
        model(x, t, context, view_indices=torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="rows of the view embedding are 0..6"):
        model(x, t, context, view_indices=torch.tensor([[0, 1, 7]]))
    with pytest.raises(ValueError, match="text embeddings of 512 tokens each"):
        model(x, t, torch.zeros(1, 3 * 500, width))
    with pytest.raises(ValueError, match="2 context blocks of 512 tokens for 3 views"):
        model(x, t, torch.zeros(1, 2 * 512, width))


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_shard_along_time_may_cut_views_and_keeps_each_tokens_context(case):
    """`select_frames` cuts the 7 views of 2 frames anywhere (a Ulysses slice): each token of a shard attends to its
    own view's context block (or the one block for all), and the shards' final layers make the whole velocity."""
    model = our_net()
    views, view_indices, context_blocks = CASES[case]
    arguments = multiview_inputs(views, context_blocks, model.cfg.crossattn_proj_in_channels)
    with torch.no_grad():
        inputs = model.prepare(**arguments)  # type: ignore[arg-type]
        frames, tokens_per_frame = inputs.grid[0], inputs.grid[1] * inputs.grid[2]
        cuts = [(0, 3), (3, 4), (4, frames)] if views == 3 else [(0, 5), (5, 9), (9, frames)]
        attention = cast(MultiviewBlock, model.blocks[0]).cross_attn
        whole = attention(inputs.x.flatten(1, 2), inputs.context, None, model.attention_fn)
        shards = [inputs.select_frames(start, stop) for start, stop in cuts]
        per_shard = [attention(shard.x.flatten(1, 2), shard.context, None, model.attention_fn) for shard in shards]
        assert [s.rope[0].shape[0] for s in shards] == [(b - a) * tokens_per_frame for a, b in cuts]
        torch.testing.assert_close(torch.cat(per_shard, dim=1), whole, rtol=1e-6, atol=1e-6)
        velocity = torch.cat([model.finalize(s.x, s) for s in shards], dim=2)
        torch.testing.assert_close(velocity, model.finalize(inputs.x, inputs), rtol=1e-5, atol=1e-5)  # GEMM blocking
    assert inputs.select_frames(0, frames).context is inputs.context  # the whole sequence: as the reference runs
