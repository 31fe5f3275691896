"""Fixture `multiview`: the official multiview DiT (`MultiViewDiT`, `predict2_multiview/networks/multiview_dit.py`)
built from the net config the official configuration composes for the released `2B/auto/multiview` checkpoint's
experiment, with the `dit` fixture's tiny widths and 2 latent frames per view, run on seeded inputs in float32
and in bf16 (net cast to bf16, its fp32 plan on). Recorded:

  config       the composed net config's fields (the released net's shapes and settings)
  state_dict   name -> shape of the released-size net (built on `meta`) and of the tiny net
  velocity     the net's output: 7 views with the default view indices and one text context per view; 3 views
               with explicit view indices and one text context for all views; float32 and bf16
  patch_input  what the patch embedding gets in the 3-view float32 case (latents, masks, view embedding)
  rope         the RoPE angles of the 7-view case (one 3D RoPE per view, the same positions)
  cross_attn   block 0's multiview cross-attention alone on seeded inputs (3 views, one context each), float32

Stand-ins: the `dit` fixture's four, plus Transformer Engine's `DotProductAttention`, which the multiview
cross-attention uses on a GPU (`MultiViewBlock` builds its `MultiViewCrossAttention` without the block's attention
backend, so it gets the default `transformer_engine`): `TEDotProductAttention`, SDPA's math kernel, heads flattened.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from tools.golden.dit import (
    TINY,
    AmpOnCpu,
    build_official_net,
    install_stand_ins,
    numpy_normal,
    random_dit_weights,
    sdpa,
)
from tools.golden.harness import Official, pack, write
from tools.golden.model_config import NET_FIELDS, official_experiment_config

EXPERIMENT = (
    "buttercup_predict2p5_2b_7views_res720p_fps30_t8_joint_alpamayo1capviewprefix_allcapsviewprefix_29frames_nofps_"
    "uniform_dropoutt0"
)
CONFIG_FILE = "cosmos_predict2/_src/predict2_multiview/configs/vid2vid/config.py"
MULTIVIEW_FIELDS = ("state_t", "n_cameras_emb", "view_condition_dim", "concat_view_embedding")
STATE_T = 2  # latent frames per view in the fixture (the released net: 8)
LATENT_HW = (4, 6)
CONTEXT_TOKENS = 512  # per text-context block (the official cross-attention's constant)
CASES = {  # case -> (views, view indices or None for the net's default, text-context blocks)
    "7views": (7, None, 7),
    "3views": (3, [0, 3, 6], 1),
}


class TEDotProductAttention:
    """Stand-in for transformer_engine.pytorch.attention.DotProductAttention (bshd, no mask): (B, S, H*D) out."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **_) -> torch.Tensor:
        return sdpa(q, k, v).flatten(-2)


def official_multiview_config(official: Official):
    """The composed config of the released multiview checkpoint's experiment."""
    return official_experiment_config(official, EXPERIMENT, CONFIG_FILE)


def official_multiview_net(official: Official, net_config, widths: dict | None, device: torch.device):
    install_stand_ins(official)
    sys.modules["transformer_engine.pytorch.attention"].DotProductAttention = TEDotProductAttention  # type: ignore[attr-defined]
    official.module("predict2_multiview.networks.multiview_dit").amp = AmpOnCpu  # type: ignore[attr-defined]
    return build_official_net(official, net_config, widths, device)


def multiview_inputs(views: int, context_blocks: int, crossattn_width: int) -> dict[str, torch.Tensor]:
    """Latents of `views` views (B, 16, views * STATE_T, H, W), per-frame timesteps (DiT units; the first frame of
    each view conditional), the condition mask, a padding mask and `context_blocks` text contexts."""
    rng = np.random.RandomState(2)
    h, w = LATENT_HW
    t = views * STATE_T
    condition = torch.zeros(1, 1, views, STATE_T, h, w)
    condition[:, :, :, 0] = 1.0
    timesteps = torch.full((views, STATE_T), 937.0)
    timesteps[:, 0] = 100.0
    context = rng.standard_normal((1, context_blocks * CONTEXT_TOKENS, crossattn_width))
    return {
        "x": torch.from_numpy(rng.standard_normal((1, 16, t, h, w)).astype(np.float32)),
        "timesteps": timesteps.reshape(1, t),
        "crossattn_emb": torch.from_numpy(3 * context.astype(np.float32)),
        "condition_mask": condition.reshape(1, 1, t, h, w),
        "padding_mask": torch.zeros(1, 1, 8 * h, 8 * w),
    }


def cross_attention_inputs(views: int, tokens_per_view: int, dim: int, context_dim: int) -> dict[str, torch.Tensor]:
    """Seeded tokens (1, views * tokens_per_view, dim) and contexts (1, views * 512, context_dim), float32."""
    return {
        "x": numpy_normal("multiview.cross_attn.x", (1, views * tokens_per_view, dim)).float(),
        "context": numpy_normal("multiview.cross_attn.context", (1, views * CONTEXT_TOKENS, context_dim)).float(),
    }


def run_official(net, inputs: dict[str, torch.Tensor], view_indices: list[int] | None, dtype: torch.dtype):
    """The call the official multiview model's denoise makes (its fp32 plan: float32 timesteps; the view indices
    per latent frame, as its conditioner passes `view_indices_B_T`)."""
    per_frame = None
    if view_indices is not None:
        per_frame = torch.tensor(view_indices).repeat_interleave(STATE_T)[None]  # (1, V * STATE_T)
    return net(
        x_B_C_T_H_W=inputs["x"].to(dtype),
        timesteps_B_T=inputs["timesteps"],
        crossattn_emb=inputs["crossattn_emb"].to(dtype),
        condition_video_input_mask_B_C_T_H_W=inputs["condition_mask"].to(dtype),
        padding_mask=inputs["padding_mask"].to(dtype),
        view_indices_B_T=per_frame,
    )


def _plain(value):
    return list(value) if type(value).__name__ == "ListConfig" else value


def multiview(official: Official, out: Path) -> None:
    config = official_multiview_config(official)
    net_config = config.model.config.net
    released, _ = official_multiview_net(official, net_config, None, torch.device("meta"))
    widths = {**TINY, "state_t": STATE_T}
    net, _ = official_multiview_net(official, net_config, widths, torch.device("cpu"))
    state = net.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    weights = {k: v.clone() for k, v in {**state, **random_dit_weights(shapes)}.items()}  # float32 copies

    captured: dict[str, torch.Tensor] = {}
    hooks = [
        net.x_embedder.register_forward_pre_hook(lambda _, args: captured.__setitem__("patch_input", args[0])),
        net.pos_embedder_options["n_cameras_7"].register_forward_hook(
            lambda _, __, output: captured.__setitem__("rope", output)
        ),
    ]
    velocity, float32_pieces = {}, {}
    for case, (views, view_indices, blocks) in CASES.items():
        inputs = multiview_inputs(views, blocks, TINY["crossattn_proj_in_channels"])
        for dtype in (torch.float32, torch.bfloat16):
            net.float().load_state_dict(weights)  # every run from the float32 weights (bf16 rounds buffers too)
            with torch.no_grad():
                output = run_official(net.to(dtype), inputs, view_indices, dtype)
            velocity[f"{case}/{str(dtype).removeprefix('torch.')}"] = pack(output)
            if dtype == torch.float32:
                float32_pieces[case] = dict(captured)
            captured.clear()
    for hook in hooks:
        hook.remove()
    net.float().load_state_dict(weights)

    h, w = LATENT_HW
    tokens_per_view = STATE_T * (h // 2) * (w // 2)
    dims = TINY["model_channels"], TINY["crossattn_emb_channels"]
    attention_inputs = cross_attention_inputs(3, tokens_per_view, *dims)
    with torch.no_grad():
        cross_attn = net.blocks[0].cross_attn(attention_inputs["x"], attention_inputs["context"])

    content = {
        "experiment": EXPERIMENT,
        "config_file": CONFIG_FILE,
        "config": {
            field: _plain(net_config[field]) for field in (*NET_FIELDS, *MULTIVIEW_FIELDS) if field in net_config
        },
        "state_t_of_the_model": config.model.config.state_t,
        "state_dict": {
            "released": {k: list(v.shape) for k, v in released.state_dict().items()},
            "tiny": {k: list(v.shape) for k, v in state.items()},
        },
        "widths": widths,
        "latent_hw": list(LATENT_HW),
        "cases": {case: {"views": v, "view_indices": i, "context_blocks": b} for case, (v, i, b) in CASES.items()},
        "weights": "random_dit_weights() in tools/golden/dit.py",
        "inputs": "multiview_inputs() and cross_attention_inputs() in tools/golden/multiview.py",
        "stand_ins": {
            "the dit fixture's four": "see tools/golden/dit.py",
            "transformer_engine DotProductAttention": "TEDotProductAttention: SDPA math kernel, heads flattened",
        },
        "velocity": velocity,
        "patch_input": pack(float32_pieces["3views"]["patch_input"]),
        "rope_angles": pack(float32_pieces["7views"]["rope"]),
        "cross_attn": pack(cross_attn),
    }
    write(out, "multiview", official, content)
