"""Fixture `dit`: the official DiT (`MinimalV1LVGDiT`, a `MiniTrainDIT`) built from the net config each official
experiment composes (2B post-trained, 14B pre-trained, 2B distilled) with tiny widths, run in float32 and in
bf16 as the official inference runs it (net cast to bf16, `use_wan_fp32_strategy` where the experiment sets it).

The official net needs a GPU in four places; each is replaced by a CPU stand-in that computes what the GPU
piece computes (and nothing else of the official code is changed):
  te.pytorch.RMSNorm          -> `TERMSNorm`: float32 arithmetic, the weight applied in float32, one rounding
                                 to the input dtype (Transformer Engine's RMSNorm kernel)
  apply_rotary_pos_emb (TE)   -> `te_fused_rope`: `fused=True` semantics: float32 arithmetic with cos / sin of
                                 the float32 angles, one rounding to the input dtype
  imaginaire attention        -> `sdpa`: PyTorch's scaled-dot-product attention (math kernel) on (B, S, H, D)
  amp.autocast("cuda", float32) -> `CudaFloat32Autocast`: CPU autocast has no float32 mode, so the ops that CUDA
                                 autocast casts inside the fp32 regions (linear, layer_norm) get float32 inputs
"""

from __future__ import annotations

import contextlib
import copy
import types
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from tools.golden.harness import Official, pack, write
from tools.golden.model_config import BASE_CONFIG, DISTILLED_CONFIG, official_experiment_config

# The tiny preset's widths (cosmos_ray.models.dit.DiTConfig.preset("tiny")); everything else from the experiment.
TINY = {
    "model_channels": 128,
    "num_blocks": 2,
    "num_heads": 4,
    "adaln_lora_dim": 32,
    "crossattn_proj_in_channels": 96,
    "crossattn_emb_channels": 64,
}
SETTINGS = {  # fixture case -> (official model, config file)
    "2B": ("Stage-c_pt_4-Index-2-Size-2B-Res-720-Fps-16-Note-rf_with_edm_ckpt", BASE_CONFIG),
    "14B": (
        "Stage-c_pt_4-reason_embeddings-v1p1-Index-43-Size-14B-Res-720-Fps-16_resume_from_reason1p1_rectified_flow_"
        "shift5_high_sigma",
        BASE_CONFIG,
    ),
    "2B-distilled": ("dmd2_trigflow_distill_cosmos_predict2_2B_bidirectional_TnI2V", DISTILLED_CONFIG),
}
LATENT_SHAPE = (1, 16, 3, 4, 6)  # (B, C, T, H, W)


class TERMSNorm(torch.nn.Module):
    """Stand-in for transformer_engine.pytorch.RMSNorm (no zero-centred gamma)."""

    def __init__(self, hidden_size: int, eps: float = 1e-5, **_):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size))

    def reset_parameters(self) -> None:
        torch.nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normalized = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normalized * self.weight.float()).to(x.dtype)


def te_fused_rope(t: torch.Tensor, freqs: torch.Tensor, tensor_format: str = "bshd", fused: bool = True, **_):
    """Stand-in for transformer_engine's apply_rotary_pos_emb(fused=True): t (B, S, H, D), freqs (S, 1, 1, D)."""
    assert tensor_format == "bshd" and fused
    angles = freqs.float().reshape(1, freqs.shape[0], 1, -1)
    x = t.float()
    first, second = x.chunk(2, dim=-1)
    return (x * angles.cos() + torch.cat((-second, first), dim=-1) * angles.sin()).to(t.dtype)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **_) -> torch.Tensor:
    """Stand-in for the imaginaire attention frontend (flash-attention / NATTEN): (B, S, H, D) in and out."""
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


class CudaFloat32Autocast(TorchFunctionMode):
    """torch.autocast("cuda", dtype=torch.float32) for the ops of the official fp32 regions, on the CPU."""

    CAST = (F.linear, F.layer_norm)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.CAST:
            args = tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
            kwargs = {
                k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in kwargs.items()
            }
        return func(*args, **kwargs)


class AmpOnCpu:
    """What `amp` (torch.amp) is inside the official DiT module while it runs on the CPU."""

    @staticmethod
    def autocast(device_type: str, enabled: bool = True, dtype: torch.dtype | None = None, **_):
        if device_type == "cuda" and enabled and dtype == torch.float32:
            return CudaFloat32Autocast()
        return contextlib.nullcontext()


def install_transformer_engine_stand_ins(official: Official) -> types.ModuleType:
    """Puts the stand-ins of Transformer Engine's RMSNorm and fused RoPE where the official DiT module looks them
    up (on the CPU, and on a GPU without Transformer Engine); returns the module."""
    te = __import__("sys").modules["transformer_engine"]
    te.pytorch.RMSNorm = TERMSNorm
    dit = official.module("predict2.networks.minimal_v4_dit")
    dit.apply_rotary_pos_emb = te_fused_rope  # type: ignore[attr-defined]  # a patch in this process only
    official.module("predict2.networks.minimal_v1_lvg_dit")
    return dit


def install_stand_ins(official: Official) -> types.ModuleType:
    """Puts the four CPU stand-ins where the official DiT module looks them up; returns the module."""
    dit = install_transformer_engine_stand_ins(official)
    # patches of the official modules, in this process only
    dit.amp = AmpOnCpu  # type: ignore[attr-defined]
    official.module("predict2.networks.a2a_cp").attention = sdpa  # type: ignore[attr-defined]
    return dit


def official_net(official: Official, setting: str):
    """The official net of `setting` with the tiny widths, built by the official config's own instantiation."""
    install_stand_ins(official)
    experiment, config_file = SETTINGS[setting]
    net_config = official_experiment_config(official, experiment, config_file).model.config.net
    return build_official_net(official, net_config, TINY, torch.device("cpu"))


def build_official_net(official: Official, net_config, widths: dict | None, device: torch.device):
    """(net, its config): the official net of a composed net config, with `widths` in place of the config's
    where given, instantiated by the official lazy config on `device` (the official init, then eval)."""
    import omegaconf  # type: ignore[import-not-found]  # the official code's dependency, not cosmos-ray's

    net_config = copy.deepcopy(net_config)
    with omegaconf.open_dict(net_config):  # the distilled net leaves crossattn_emb_channels at its default
        for field, value in (widths or {}).items():
            net_config[field] = value
        net_config["sac_config"]["mode"] = "none"  # activation checkpointing: training only
    lazy = official.module("imaginaire.lazy_config")
    with torch.device(device):
        return lazy.instantiate(net_config).eval().requires_grad_(False), net_config


def numpy_normal(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal draws (float64) from the seed of `name` (numpy's Mersenne Twister: the fixtures' values)."""
    return torch.from_numpy(np.random.RandomState(zlib.crc32(name.encode())).standard_normal(shape))


def device_normal(device: torch.device) -> Callable[[str, tuple[int, ...]], torch.Tensor]:
    """Standard normal draws (float32) from the seed of each name, made on `device` (the billions of a full-size
    net in seconds on a GPU; other values than `numpy_normal`'s)."""

    def normal(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        generator = torch.Generator(device).manual_seed(zlib.crc32(name.encode()))
        return torch.randn(shape, generator=generator, device=device)

    return normal


def random_dit_weights(
    shapes: dict[str, tuple[int, ...]], normal: Callable[[str, tuple[int, ...]], torch.Tensor] = numpy_normal
) -> dict[str, torch.Tensor]:
    """Seeded weights for every parameter named `*.weight` / `*.bias` (each drawn from its own name's seed, so
    the official and the cosmos-ray net get the same values whatever other entries they hold): normal /
    sqrt(fan-in) for matrices, 1 + 0.2 normal for norm weights, 0.1 normal for biases. cosmos-ray's test calls
    the same function."""
    weights = {}
    for name, shape in shapes.items():
        if not name.endswith((".weight", ".bias")) or not shape:
            continue
        draws = normal(name, shape)
        if len(shape) >= 2:
            value = draws / np.sqrt(shape[-1])
        elif name.endswith("norm.weight"):
            value = 1.0 + 0.2 * draws
        else:
            value = 0.1 * draws
        weights[name] = value.float()
    return weights


def dit_inputs(crossattn_width: int) -> dict[str, torch.Tensor]:
    """Latents, per-frame timesteps (DiT units), text embedding, condition mask (frame 0) and a padding mask."""
    rng = np.random.RandomState(1)
    b, _, t, h, w = LATENT_SHAPE
    condition = torch.zeros(b, 1, t, h, w)
    condition[:, :, 0] = 1.0
    return {
        "x": torch.from_numpy(rng.standard_normal(LATENT_SHAPE).astype(np.float32)),
        "timesteps": torch.tensor([[100.0, 937.0, 937.0]]),
        "crossattn_emb": torch.from_numpy(3 * rng.standard_normal((b, 7, crossattn_width)).astype(np.float32)),
        "condition_mask": condition,
        "padding_mask": torch.zeros(b, 1, 8 * h, 8 * w),
    }


def run_official_net(net, inputs: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The call the official model's denoise makes: latents and condition in the model dtype, the timesteps in
    float32 (the rectified-flow sampler's) where the net has the fp32 plan and in the model dtype where it has
    not (the distilled model's `denoise_edm` casts its c_noise to it), the batch's text embedding and padding
    mask in the model dtype."""
    return net(
        x_B_C_T_H_W=inputs["x"].to(dtype),
        timesteps_B_T=inputs["timesteps"] if net.use_wan_fp32_strategy else inputs["timesteps"].to(dtype),
        crossattn_emb=inputs["crossattn_emb"].to(dtype),
        condition_video_input_mask_B_C_T_H_W=inputs["condition_mask"].to(dtype),
        padding_mask=inputs["padding_mask"].to(dtype),
    )


def dit(official: Official, out: Path) -> None:
    cases = {}
    for setting in SETTINGS:
        net, net_config = official_net(official, setting)
        state = {k: v for k, v in net.state_dict().items()}
        weights = random_dit_weights({k: tuple(v.shape) for k, v in state.items()})
        net.load_state_dict({**state, **weights})
        inputs = dit_inputs(TINY["crossattn_proj_in_channels"])
        for dtype in (torch.float32, torch.bfloat16):
            with torch.no_grad():
                output = run_official_net(net.to(dtype), inputs, dtype)
            cases[f"{setting}/{str(dtype).removeprefix('torch.')}"] = {
                "use_wan_fp32_strategy": bool(net_config["use_wan_fp32_strategy"]),
                "timestep_scale": float(net_config["timestep_scale"]),
                "output": pack(output),
            }
        net.float()
    content = {
        "widths": TINY,
        "latent_shape": list(LATENT_SHAPE),
        "experiments": {setting: experiment for setting, (experiment, _) in SETTINGS.items()},
        "weights": "random_dit_weights() in tools/golden/dit.py",
        "inputs": "dit_inputs() in tools/golden/dit.py",
        "stand_ins": {
            "transformer_engine.pytorch.RMSNorm": "TERMSNorm: float32 arithmetic, one rounding",
            "transformer_engine apply_rotary_pos_emb(fused=True)": "te_fused_rope: float32 arithmetic, one rounding",
            "imaginaire.attention.attention": "sdpa: torch scaled_dot_product_attention, math kernel",
            "torch.amp.autocast('cuda', dtype=float32)": "CudaFloat32Autocast: float32 linear / layer_norm inputs",
        },
        "cases": cases,
    }
    write(out, "dit", official, content)


def pixel_norm(official: Official, out: Path) -> None:
    """The official model's uint8 -> [-1, 1] normalization of the conditioning pixels
    (`_normalize_video_databatch_inplace`) in bf16 and float32, on all 256 levels."""
    from tools.golden.sampling import ToyTokenizer, official_model

    levels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 1, 16, 16).expand(1, 3, 1, 16, 16).contiguous()
    cases = {}
    for dtype in (torch.bfloat16, torch.float32):
        model = official_model(official, "post-trained", 1, None, ToyTokenizer(torch.zeros(1)))
        model.tensor_kwargs = {"device": "cpu", "dtype": dtype}  # the model's precision
        batch = {"video": levels.clone()}
        model._normalize_video_databatch_inplace(batch)
        cases[str(dtype).removeprefix("torch.")] = pack(batch["video"][0, 0, 0].flatten())
    write(out, "pixel_norm", official, {"levels": "0..255", "cases": cases})
