"""DiT: parity with diffusers' CosmosTransformer3DModel, the official key layout, loading, precision."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
import torch
from torch import nn

from cosmos_ray.models.attention import attention, sdpa_backends
from cosmos_ray.models.dit import (
    DiTConfig,
    MiniTrainDiT,
    diffusers_config,
    diffusers_to_official_key,
    load_dit,
    official_to_diffusers_key,
)
from cosmos_ray.models.weights import CheckpointMismatchError, rename_keys

TINY = DiTConfig.preset("tiny")


def random_dit(cfg: DiTConfig = TINY, seed: int = 0) -> MiniTrainDiT:
    """A DiT whose every parameter is random (the reference zero-initializes the AdaLN up-projections)."""
    torch.manual_seed(seed)
    model = MiniTrainDiT(cfg)
    for param in model.parameters():
        nn.init.normal_(param, std=0.1)
    return model.eval()


def random_inputs(cfg: DiTConfig, b: int, t: int, h: int, w: int, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(b, cfg.in_channels, t, h, w, generator=g),
        timesteps=torch.rand(b, generator=g) * 1000,
        crossattn_emb=torch.randn(b, 20, cfg.crossattn_proj_in_channels, generator=g),
    )


def rel_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours.float() - reference.float()).abs().max() / reference.float().abs().max()).item()


# ----------------------------------------------------------------------------------------------------
# Parity with diffusers


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


def test_fps_is_ignored_without_fps_modulation():
    model = random_dit()
    inputs = random_inputs(TINY, 1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(**inputs, fps=16), model(**inputs, fps=30))
    modulated = random_dit(dataclasses.replace(TINY, rope_enable_fps_modulation=True))
    with torch.no_grad():
        assert not torch.allclose(modulated(**inputs, fps=16), modulated(**inputs, fps=30))


# ----------------------------------------------------------------------------------------------------
# The official layout


# The official nets, as `_src/predict2/configs/video2world/defaults/net.py` builds them (COSMOS_V1_2B_NET_MININET
# and COSMOS_V1_14B_NET_MININET: model_channels, num_heads, num_blocks; both with in/out channels 16, patch
# 1x2x2, adaln_lora_dim 256, max 128 frames x 240 x 240, no extra per-block position embedding), with the
# Reason1 rectified-flow experiments' crossattn_proj 100352 -> 1024 (model_2B_reason_1p1_rectified_flow.py,
# model_14b_reason_1p1_rectified_flow.py).
OFFICIAL_NETS = {"2B": (2048, 16, 28), "14B": (5120, 40, 36)}


def reference_shapes(model_channels: int, num_heads: int, num_blocks: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of an official MiniTrainDIT state dict: 18 input channels (16 latent + condition mask
    + padding mask) in 1x2x2 patches, the 3D RoPE buffers of `VideoRopePosition3DEmb` (head split into
    h, w: head // 6 * 2 channels each, t: the rest; one frequency per 2 channels), an AdaLN-LoRA timestep
    embedder, blocks of self-attention, cross-attention and MLP (ratio 4), each with an AdaLN-LoRA
    modulation, and a modulated final layer."""
    d, lora, ctx = model_channels, 256, 1024
    head = d // num_heads
    dim_h = head // 6 * 2
    dim_t = head - 2 * dim_h
    top = {
        "x_embedder.proj.1.weight": (d, 18 * 2 * 2),
        "pos_embedder.seq": (128,),  # max(240 // 2, 240 // 2, 128)
        "pos_embedder.dim_spatial_range": (dim_h // 2,),
        "pos_embedder.dim_temporal_range": (dim_t // 2,),
        "t_embedder.1.linear_1.weight": (d, d),
        "t_embedder.1.linear_2.weight": (3 * d, d),
        "t_embedding_norm.weight": (d,),
        "crossattn_proj.0.weight": (ctx, 100352),
        "crossattn_proj.0.bias": (ctx,),
        "final_layer.linear.weight": (2 * 2 * 1 * 16, d),
        "final_layer.adaln_modulation.1.weight": (lora, d),
        "final_layer.adaln_modulation.2.weight": (2 * d, lora),
    }
    block: dict[str, tuple[int, ...]] = {}
    for name in ("self_attn", "cross_attn", "mlp"):
        block[f"adaln_modulation_{name}.1.weight"] = (lora, d)
        block[f"adaln_modulation_{name}.2.weight"] = (3 * d, lora)
    for name, context in (("self_attn", d), ("cross_attn", ctx)):
        block |= {
            f"{name}.q_proj.weight": (d, d),
            f"{name}.k_proj.weight": (d, context),
            f"{name}.v_proj.weight": (d, context),
            f"{name}.output_proj.weight": (d, d),
            f"{name}.q_norm.weight": (head,),
            f"{name}.k_norm.weight": (head,),
        }
    block |= {"mlp.layer1.weight": (4 * d, d), "mlp.layer2.weight": (d, 4 * d)}
    return top | {f"blocks.{i}.{name}": shape for i in range(num_blocks) for name, shape in block.items()}


@pytest.mark.parametrize("size", OFFICIAL_NETS)
def test_released_nets_on_meta_have_the_official_names_and_shapes(size):
    with torch.device("meta"):
        model = MiniTrainDiT(DiTConfig.preset(size))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == reference_shapes(*OFFICIAL_NETS[size])
    assert len(shapes) == 12 + OFFICIAL_NETS[size][2] * 20


def test_14b_parameter_count():
    """About 14.4 B parameters: 28.7 GB of bfloat16 weights (the memory plan in docs/performance.md)."""
    count = sum(
        math.prod(shape)
        for name, shape in reference_shapes(*OFFICIAL_NETS["14B"]).items()
        if "pos_embedder" not in name
    )
    assert 14.3e9 < count < 14.5e9


@pytest.mark.parametrize("size", OFFICIAL_NETS)
def test_released_presets_have_the_official_experiment_overrides(size):
    """The Reason1 rectified-flow experiments (configs/video2world/experiment/reason_embeddings/
    model_2B_reason_1p1_rectified_flow.py and model_14b_reason_1p1_rectified_flow.py) set the same net
    overrides for both sizes."""
    cfg = DiTConfig.preset(size)
    assert (cfg.rope_h_extrapolation_ratio, cfg.rope_w_extrapolation_ratio, cfg.rope_t_extrapolation_ratio) == (3, 3, 1)
    assert not cfg.rope_enable_fps_modulation
    assert cfg.timestep_scale == 0.001
    assert cfg.fp32_modulation  # use_wan_fp32_strategy=True
    assert (cfg.crossattn_proj_in_channels, cfg.crossattn_emb_channels) == (100352, 1024)


def test_key_table_round_trips_and_matches_diffusers_names():
    official = [k for k in reference_shapes(*OFFICIAL_NETS["2B"]) if not k.startswith("pos_embedder.")]
    assert all(diffusers_to_official_key(official_to_diffusers_key(k) or "") == k for k in official)
    assert official_to_diffusers_key("pos_embedder.seq") is None

    transformer_cosmos = pytest.importorskip("diffusers.models.transformers.transformer_cosmos")
    model = random_dit()
    with torch.device("meta"):
        twin = transformer_cosmos.CosmosTransformer3DModel(**diffusers_config(TINY))
    assert set(rename_keys(model.state_dict(), official_to_diffusers_key)) == set(twin.state_dict())


# ----------------------------------------------------------------------------------------------------
# Loading


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


def test_bf16_keeps_the_reference_fp32_modules_and_stays_close():
    model = random_dit()
    inputs = random_inputs(TINY, 2, 3, 8, 12)
    with torch.no_grad():
        reference = model(**inputs)
    model.cast(torch.bfloat16)
    fp32_params = {id(p) for module in model.fp32_modules() for p in module.parameters()}
    for name, param in model.named_parameters():
        assert param.dtype == (torch.float32 if id(param) in fp32_params else torch.bfloat16), name
    with torch.no_grad():
        out = model(**inputs)
    assert out.dtype == torch.float32  # the final layer runs in float32, as in the reference
    assert rel_error(out, reference) < 3e-2


# ----------------------------------------------------------------------------------------------------
# Pieces for context parallelism, compile-friendliness, input errors


def test_prepare_blocks_finalize_is_forward_and_attention_is_swappable():
    model = random_dit()
    inputs = random_inputs(TINY, 2, 3, 8, 12)
    calls = []

    def recording_attention(q, k, v):
        calls.append(q.shape)
        return attention(q, k, v)

    with torch.no_grad():
        prepared = model.prepare(**inputs)
        tokens = prepared.x
        for block in model.blocks:
            tokens = block(
                tokens,
                prepared.emb,
                prepared.adaln_lora,
                prepared.context,
                prepared.rope,
                attention_fn=recording_attention,
            )
        assert torch.equal(model.finalize(tokens, prepared), model(**inputs))
        assert calls == [(2, 3 * 4 * 6, TINY.num_heads, TINY.head_dim)] * TINY.num_blocks

        shards = [prepared.select_frames(0, 2), prepared.select_frames(2, 3)]
        assert [s.rope[0].shape[0] for s in shards] == [2 * 24, 24]
        per_shard = torch.cat([model.finalize(s.x, s) for s in shards], dim=2)
        assert rel_error(per_shard, model.finalize(prepared.x, prepared)) < 1e-6  # matmul blocking differs


def test_block_traces_without_graph_breaks():
    model = random_dit()
    prepared = model.prepare(**random_inputs(TINY, 1, 3, 8, 12))
    explanation = torch._dynamo.explain(model.blocks[0])(
        prepared.x, prepared.emb, prepared.adaln_lora, prepared.context, prepared.rope
    )
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(x=torch.zeros(1, 17, 3, 8, 12)), "x:"),
        (dict(x=torch.zeros(1, 16, 3, 7, 12)), "not divisible by the patch size"),
        (dict(timesteps=torch.zeros(2)), "timesteps:"),
        (dict(crossattn_emb=torch.zeros(1, 20, 95)), "crossattn_emb:"),
        (dict(condition_mask=torch.zeros(1, 1, 2, 8, 12)), "condition_mask:"),
        (dict(x=torch.zeros(1, 16, 3, 8, 484)), "exceeds the RoPE table"),
    ],
)
def test_bad_inputs_name_the_field(change, field):
    inputs = random_inputs(TINY, 1, 3, 8, 12) | change
    with pytest.raises(ValueError, match=field):
        random_dit()(**inputs)


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="unknown DiT preset '7B'; expected one of 2B, 14B, tiny"):
        DiTConfig.preset("7B")


# ----------------------------------------------------------------------------------------------------
# Attention


def test_attention_is_softmax_attention_over_bshd():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 5, 3, 8, generator=g)
    k, v = torch.randn(2, 7, 3, 8, generator=g), torch.randn(2, 7, 3, 8, generator=g)
    weights = torch.einsum("bqhd,bkhd->bhqk", q, k).div(math.sqrt(8)).softmax(dim=-1)
    expected = torch.einsum("bhqk,bkhd->bqhd", weights, v)
    for backend in ("auto", "math"):
        assert torch.allclose(attention(q, k, v, backend=backend), expected, atol=1e-6)


def test_attention_backend_choice():
    cuda_order = [b.name for b in sdpa_backends("auto", torch.device("cuda"))]
    assert cuda_order == ["CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"]
    assert [b.name for b in sdpa_backends("auto", torch.device("cpu"))] == ["MATH"]
    with pytest.raises(ValueError, match="unknown attention backend 'xformers'"):
        sdpa_backends("xformers", torch.device("cpu"))


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
