"""Fixture `distilled`: the official few-step sampler of the distilled 2B model
(`Video2WorldModelDistillDMD2TrigFlow.generate_samples_from_batch`, `_src/predict2/distill/models/`) with its
denoiser (`DistillationCoreMixin.denoise_edm`, `RectifiedFlow_sCMWrapper`) and conditioner, configured by the
distilled experiment as the official config system composes it.

Cases: text2world with the official tiny distilled net (the `dit` fixture's net and weights) in bf16, as the
official inference runs it, and in float32, recording the dtype and values of every timestep the net is
given; and a toy network that returns NaN, +inf and -inf at fixed positions, for the `torch.nan_to_num` the
official loop ends with.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from tools.golden.dit import SETTINGS, official_net, random_dit_weights
from tools.golden.harness import Official, pack, write
from tools.golden.model_config import DISTILLED_CONFIG, official_experiment_config

STATE_T, RESOLUTION = 3, (32, 48)  # latents (1, 16, 3, 4, 6): the `dit` fixture's shape


def distilled_embedding() -> torch.Tensor:
    """The prompt embedding (1, 16, 96) of the distilled cases, bf16-representable (the official inference casts
    the batch's floating tensors to bf16)."""
    values = np.random.RandomState(21).standard_normal((1, 16, 96)).astype(np.float32)
    return torch.from_numpy(values).bfloat16().float()


def nonfinite_velocity(x: torch.Tensor) -> torch.Tensor:
    """The toy network of the nan_to_num case: 0.5 x, with NaN in latent row 0, +inf in row 1 and -inf in row 2
    of every frame and channel. cosmos-ray's test calls the same function."""
    out = 0.5 * x.float()
    out[..., 0, :] = float("nan")
    out[..., 1, :] = float("inf")
    out[..., 2, :] = float("-inf")
    return out


class NonFiniteNet(torch.nn.Module):
    """`nonfinite_velocity` behind the official network call."""

    is_context_parallel_enabled = False

    def forward(self, x_B_C_T_H_W, **_):
        return nonfinite_velocity(x_B_C_T_H_W)


class ZeroLatentTokenizer:
    """Stands in for the VAE: text2world encodes a black clip whose latents the zero condition mask discards."""

    spatial_compression_factor = 8

    def get_latent_num_frames(self, num_pixel_frames: int) -> int:
        return 1 + (num_pixel_frames - 1) // 4

    def get_pixel_num_frames(self, num_latent_frames: int) -> int:
        return 1 + 4 * (num_latent_frames - 1)

    def encode(self, state: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = state.shape
        return torch.zeros(b, 16, self.get_latent_num_frames(t), h // 8, w // 8, dtype=state.dtype)


def official_distilled_model(official: Official, net, dtype: torch.dtype):
    """A Video2WorldModelDistillDMD2TrigFlow holding `net`, with the distilled experiment's composed config
    (state_t made tiny), set up as its __init__ sets up inference (no teacher, critic, checkpoint or text
    encoder)."""
    dmd2 = official.module("predict2.distill.models.video2world_model_distill_dmd2")
    scaling = official.module("predict2.modules.denoiser_scaling")
    lazy = official.module("imaginaire.lazy_config")
    import omegaconf  # type: ignore[import-not-found]  # the official code's dependency, not cosmos-ray's

    composed = copy.deepcopy(official_experiment_config(official, SETTINGS["2B-distilled"][0], DISTILLED_CONFIG))
    with omegaconf.open_dict(composed.model.config):
        composed.model.config.state_t = STATE_T
    config = lazy.instantiate(composed.model.config)
    assert config.scaling == "rectified_flow", config.scaling
    model = dmd2.Video2WorldModelDistillDMD2TrigFlow.__new__(dmd2.Video2WorldModelDistillDMD2TrigFlow)
    torch.nn.Module.__init__(model)
    model.init_distillation_common(config)
    model.config = config
    model.precision = dtype
    model.tensor_kwargs = {"device": "cpu", "dtype": dtype}
    model.sigma_data = config.sigma_data
    model.sigma_conditional = config.sigma_conditional
    model.setup_data_key()
    model.scaling_from_time = scaling.RectifiedFlow_sCMWrapper(config.sigma_data)  # __init__'s choice for RF
    model.selected_sampling_time = config.selected_sampling_time
    model.conditioner = lazy.instantiate(config.conditioner)
    model.tokenizer = ZeroLatentTokenizer()
    model.net = net
    model.net_teacher = model.net_fake_score = None  # built for training only
    return model


def text2world_batch(dtype: torch.dtype) -> dict:
    """The batch `Video2WorldInference._get_data_batch_input` builds for text2world, its floating tensors in the
    model dtype as the official inference casts them (fps fixed at 16: the distilled net has no fps input)."""
    height, width = RESOLUTION
    return {
        "dataset_name": "video_data",
        "video": torch.zeros(1, 3, 1 + 4 * (STATE_T - 1), height, width, dtype=torch.uint8),
        "fps": torch.tensor([16.0], dtype=dtype),
        "padding_mask": torch.zeros(1, 1, height, width, dtype=dtype),
        "num_conditional_frames": 0,
        "t5_text_embeddings": distilled_embedding().to(dtype),
        "neg_t5_text_embeddings": distilled_embedding().to(dtype),
    }


def distilled(official: Official, out: Path) -> None:
    cases = {}
    net, _ = official_net(official, "2B-distilled")
    state = net.state_dict()
    weights = {**state, **random_dit_weights({k: tuple(v.shape) for k, v in state.items()})}
    calls: list[dict] = []

    def record(module, args, kwargs):
        timesteps = kwargs["timesteps_B_T"]
        x_dtype = str(kwargs["x_B_C_T_H_W"].dtype)
        calls.append({"x_dtype": x_dtype, "timesteps_dtype": str(timesteps.dtype), "timesteps": pack(timesteps)})

    handle = net.register_forward_pre_hook(record, with_kwargs=True)
    for dtype, num_steps, seed in ((torch.bfloat16, 35, 0), (torch.float32, 35, 0), (torch.bfloat16, 2, 3)):
        calls.clear()
        net.float().load_state_dict(weights)  # float32 weights, then cast: the official inference's bf16 net
        model = official_distilled_model(official, net.to(dtype), dtype)
        latents = model.generate_samples_from_batch(
            text2world_batch(dtype), n_sample=1, seed=seed, num_steps=num_steps, guidance=7, is_negative_prompt=True
        )
        cases[f"text2world/{str(dtype).removeprefix('torch.')}/{num_steps}"] = {
            "seed": seed,
            "num_steps": num_steps,
            "latents": pack(latents),
            "calls": copy.deepcopy(calls),
        }
    handle.remove()
    model = official_distilled_model(official, NonFiniteNet(), torch.float32)
    latents = model.generate_samples_from_batch(text2world_batch(torch.float32), n_sample=1, seed=5, num_steps=35)
    cases["nan_to_num"] = {"seed": 5, "num_steps": 35, "latents": pack(latents)}
    content = {
        "experiment": SETTINGS["2B-distilled"][0],
        "state_t": STATE_T,
        "resolution": list(RESOLUTION),
        "net": "the dit fixture's 2B-distilled net (tools/golden/dit.py: TINY widths, random_dit_weights)",
        "embedding": "distilled_embedding() in tools/golden/distilled.py",
        "toy_network": "nonfinite_velocity() in tools/golden/distilled.py (case nan_to_num)",
        "cases": cases,
    }
    write(out, "distilled", official, content)
