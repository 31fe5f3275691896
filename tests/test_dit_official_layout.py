"""The DiT against the official layout: the released nets' state-dict names and shapes, the 14B parameter count,
the official experiment overrides of the released presets, and the key table to diffusers' names."""

from __future__ import annotations

import math

import pytest
import torch

from cosmos_ray.models.dit import (
    DiTConfig,
    MiniTrainDiT,
    diffusers_config,
    diffusers_to_official_key,
    official_to_diffusers_key,
)
from cosmos_ray.models.weights import rename_keys
from tests.dit_helpers import TINY, random_dit

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
