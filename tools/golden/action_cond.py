"""Fixture `action_cond`: the official action-conditioned DiT (`ActionChunkConditionedMinimalV1LVGDiT`,
`predict2/action/networks/action_conditioned_minimal_v1_lvg_dit.py`) built from the net config the official
configuration composes for the released `2B/robot/action-cond` checkpoint's experiment, with the `dit` fixture's
tiny widths and the released 4 latent frames, run on seeded inputs (latents, actions) in float32 and in bf16 (net
cast to bf16, its fp32 plan on, the actions in bf16 as the official inference passes them). Recorded:

  config        the composed net config's fields (the released net's shapes, its action settings), state_t and
                the training video size
  state_dict    name -> shape of the released-size net (built on `meta`) and of the tiny net
  velocity      the net's output: one sample with the first latent frame conditional; two samples with the first
                two conditional; float32 and bf16
  action_mlps   the two action MLPs' outputs (B, 3, D) and (B, 3, 3D), before the zero row and the mask
  offsets       what the action embedding makes of the timestep embedding: the RMSNorm's input (timestep
                features + first MLP) and the AdaLN-LoRA term the blocks get (+ second MLP), (B, 4, D) / (B, 4, 3D)

Stand-ins: the `dit` fixture's four (the action net's module imports `torch.amp` itself: the CPU stand-in goes
there too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tools.golden.dit import TINY, AmpOnCpu, build_official_net, install_stand_ins, random_dit_weights
from tools.golden.harness import Official, pack, write
from tools.golden.model_config import NET_FIELDS, official_experiment_config

EXPERIMENT = "cosmos_predict2p5_2B_reason_embeddings_action_conditioned_rectified_flow_bridge_13frame_256x320"
CONFIG_FILE = "cosmos_predict2/_src/predict2/action/configs/action_conditioned/config.py"
NET_MODULE = "predict2.action.networks.action_conditioned_minimal_v1_lvg_dit"
ACTION_FIELDS = ("action_dim", "temporal_compression_ratio", "num_action_per_chunk", "hidden_dim_in_action_embedder")
STATE_T = 4  # latent frames (the released net's: 1 + 12 // 4)
LATENT_HW = (4, 6)
CASES = {"first_frame": (1, 1), "two_frames_batch2": (2, 2)}  # case -> (batch, conditional latent frames)


def official_action_net(official: Official, net_config, widths: dict | None, device: torch.device):
    install_stand_ins(official)
    official.module(NET_MODULE).amp = AmpOnCpu  # type: ignore[attr-defined]  # a patch in this process only
    return build_official_net(official, net_config, widths, device)


def action_inputs(batch: int, conditional_frames: int, crossattn_width: int, action_dim: int = 7) -> dict:
    """Latents (B, 16, 4, H, W), per-frame timesteps (DiT units; conditional frames at 100), the condition mask, a
    padding mask, a text embedding and (B, 12, action_dim) actions, float32."""
    rng = np.random.RandomState(3)
    h, w = LATENT_HW
    condition = torch.zeros(batch, 1, STATE_T, h, w)
    condition[:, :, :conditional_frames] = 1.0
    timesteps = torch.full((batch, STATE_T), 937.0)
    timesteps[:, :conditional_frames] = 100.0
    return {
        "x": torch.from_numpy(rng.standard_normal((batch, 16, STATE_T, h, w)).astype(np.float32)),
        "timesteps": timesteps,
        "crossattn_emb": torch.from_numpy(3 * rng.standard_normal((batch, 7, crossattn_width)).astype(np.float32)),
        "condition_mask": condition,
        "padding_mask": torch.zeros(batch, 1, 8 * h, 8 * w),
        "actions": torch.from_numpy(rng.uniform(-1, 1, (batch, 4 * (STATE_T - 1), action_dim)).astype(np.float32)),
    }


def run_official(net, inputs: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The call the official action model's denoise makes: float32 timesteps (its fp32 plan), everything else of
    the batch in the model dtype (`video2world.py` moves every floating batch tensor to bf16, actions included)."""
    return net(
        x_B_C_T_H_W=inputs["x"].to(dtype),
        timesteps_B_T=inputs["timesteps"],
        crossattn_emb=inputs["crossattn_emb"].to(dtype),
        condition_video_input_mask_B_C_T_H_W=inputs["condition_mask"].to(dtype),
        padding_mask=inputs["padding_mask"].to(dtype),
        action=inputs["actions"].to(dtype),
    )


def _plain(value):
    return list(value) if type(value).__name__ in ("ListConfig", "tuple") else value


def action_cond(official: Official, out: Path) -> None:
    config = official_experiment_config(official, EXPERIMENT, CONFIG_FILE)
    net_config = config.model.config.net
    released, _ = official_action_net(official, net_config, None, torch.device("meta"))
    net, _ = official_action_net(official, net_config, TINY, torch.device("cpu"))
    state = net.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    weights = {k: v.clone() for k, v in {**state, **random_dit_weights(shapes)}.items()}  # float32 copies

    captured: dict[str, torch.Tensor] = {}

    def keep(name: str):
        return lambda _, __, output: captured.__setitem__(name, output)

    hooks = [
        net.action_embedder_B_D.register_forward_hook(keep("action_mlp_D")),
        net.action_embedder_B_3D.register_forward_hook(keep("action_mlp_3D")),
        net.t_embedding_norm.register_forward_pre_hook(lambda _, args: captured.__setitem__("features", args[0])),
        net.blocks[0].register_forward_pre_hook(
            lambda _, __, kwargs: captured.__setitem__("adaln_lora", kwargs["adaln_lora_B_T_3D"]), with_kwargs=True
        ),
    ]
    velocity, pieces = {}, {}
    for case, (batch, conditional_frames) in CASES.items():
        inputs = action_inputs(batch, conditional_frames, TINY["crossattn_proj_in_channels"])
        for dtype in (torch.float32, torch.bfloat16):
            net.float().load_state_dict(weights)  # every run from the float32 weights
            with torch.no_grad():
                output = run_official(net.to(dtype), inputs, dtype)
            key = f"{case}/{str(dtype).removeprefix('torch.')}"
            velocity[key] = pack(output)
            pieces[key] = {name: pack(value) for name, value in captured.items()}
            captured.clear()
    for hook in hooks:
        hook.remove()

    dataset = getattr(getattr(config, "dataloader_train", None), "dataset", None)
    content = {
        "experiment": EXPERIMENT,
        "config_file": CONFIG_FILE,
        "net_class": f"{type(net).__module__}.{type(net).__qualname__}",
        "config": {field: _plain(net_config[field]) for field in (*NET_FIELDS, *ACTION_FIELDS) if field in net_config},
        "state_t_of_the_model": config.model.config.state_t,
        "video_size": None if dataset is None else _plain(dataset.get("video_size")),
        "state_dict": {
            "released": {k: list(v.shape) for k, v in released.state_dict().items()},
            "tiny": {k: list(v.shape) for k, v in state.items()},
        },
        "widths": TINY,
        "state_t": STATE_T,
        "latent_hw": list(LATENT_HW),
        "cases": {case: {"batch": b, "conditional_frames": c} for case, (b, c) in CASES.items()},
        "weights": "random_dit_weights() in tools/golden/dit.py",
        "inputs": "action_inputs() in tools/golden/action_cond.py",
        "stand_ins": {"the dit fixture's four": "see tools/golden/dit.py (amp also in the action net's module)"},
        "velocity": velocity,
        "pieces": pieces,
    }
    write(out, "action_cond", official, content)
