"""Fixture `sampling`: the official sampling loop (generate_samples_from_batch) driven by a toy network, and the
official model set up around a given network and tokenizer (also used by the whole tiny runs)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from tools.golden.harness import Official, pack, write
from tools.golden.solver import VARIANTS


class ToyNet(torch.nn.Module):
    """Stands in for the DiT: a fixed function of everything the official loop hands it, recording each call."""

    is_context_parallel_enabled = False

    def __init__(self):
        super().__init__()
        self.calls = []

    def disable_context_parallel(self):
        pass

    def forward(self, x_B_C_T_H_W, timesteps_B_T, crossattn_emb, condition_video_input_mask_B_C_T_H_W, **_):
        timesteps = timesteps_B_T.float()
        mask = condition_video_input_mask_B_C_T_H_W.float()
        self.calls.append({"timesteps": pack(timesteps), "mask_per_frame": pack(mask[:, 0, :, 0, 0])})
        return toy_velocity(x_B_C_T_H_W.float(), timesteps, crossattn_emb.float(), mask)


def toy_velocity(x, timesteps_b_t, context, mask_b_1_t_h_w):
    """The toy network's velocity (B, C, T, H, W); cosmos-ray's test calls the same function."""
    text = context.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)
    time = timesteps_b_t.view(timesteps_b_t.shape[0], 1, -1, 1, 1) / 1000.0
    return 0.5 * x + text + 0.25 * time + 0.1 * mask_b_1_t_h_w


class ToyTokenizer:
    """Stands in for the VAE in the toy cases: fixed seeded clean latents, whatever the pixels."""

    spatial_compression_factor = 8

    def __init__(self, latents: torch.Tensor):
        self.latents = latents

    def get_latent_num_frames(self, num_pixel_frames: int) -> int:
        return 1 + (num_pixel_frames - 1) // 4

    def encode(self, state: torch.Tensor) -> torch.Tensor:
        return self.latents


def official_model(official: Official, variant: str, state_t: int, net, tokenizer):
    """A Video2WorldModelRectifiedFlow holding `net` and `tokenizer`, set up as its __init__ sets it up (without
    the checkpoint, text encoder and training parts) and configured as the 2B experiment configures it."""
    v2w = official.module("predict2.models.video2world_model_rectified_flow")
    official.module("predict2.models.text2world_model_rectified_flow")
    conditioner_config = official.module("predict2.configs.video2world.defaults.conditioner")
    lazy = official.module("imaginaire.lazy_config")
    unipc = official.module("predict2.models.fm_solvers_unipc")
    model = v2w.Video2WorldModelRectifiedFlow.__new__(v2w.Video2WorldModelRectifiedFlow)
    torch.nn.Module.__init__(model)
    model.config = v2w.Video2WorldModelRectifiedFlowConfig(
        state_t=state_t,
        precision="float32",
        min_num_conditional_frames=0,
        max_num_conditional_frames=2,
        conditional_frame_timestep=VARIANTS[variant]["conditional_frame_timestep"],
        use_kerras_sigma_at_inference=VARIANTS[variant]["use_kerras_sigma"],
    )
    model.precision = torch.float32
    model.tensor_kwargs = {"device": "cpu", "dtype": torch.float32}
    model.tensor_kwargs_fp32 = {"device": "cpu", "dtype": torch.float32}
    model.setup_data_key()
    model.sample_scheduler = unipc.FlowUniPCMultistepScheduler(
        num_train_timesteps=1000, shift=1, use_dynamic_shifting=False
    )
    conditioner = copy.deepcopy(conditioner_config.VideoPredictionConditioner)
    conditioner.use_video_condition.dropout_rate = 0.0  # the 2B experiment's conditioner settings
    conditioner.text.dropout_rate = 0.2
    model.conditioner = lazy.instantiate(conditioner)
    model.tokenizer = tokenizer
    model.net = net
    return model


def data_batch(video: torch.Tensor, num_conditional: int, prompt: torch.Tensor, negative: torch.Tensor) -> dict:
    """The batch Video2WorldInference._get_data_batch_input builds, kept in float32 on the CPU (the official one
    casts floating tensors to bf16 on the GPU)."""
    _, _, _, height, width = video.shape
    return {
        "dataset_name": "video_data",
        "video": video,
        "fps": torch.tensor([16.0]),
        "padding_mask": torch.zeros(1, 1, height, width),
        "num_conditional_frames": num_conditional,
        "t5_text_embeddings": prompt,
        "neg_t5_text_embeddings": negative,
    }


def sampling(official: Official, out: Path) -> None:
    cases = {}
    state_t, height, width = 3, 16, 32
    prompt, negative = (
        torch.from_numpy(np.random.RandomState(seed).standard_normal((1, 8, 12)).astype(np.float32)) for seed in (5, 6)
    )
    clean = torch.from_numpy(np.random.RandomState(7).standard_normal((1, 16, state_t, 2, 4)).astype(np.float32))
    for name, variant, num_conditional, guidance, seed in (
        ("text2world", "post-trained", 0, 7, 0),
        ("image2world", "post-trained", 1, 7, 1),
        ("video2world", "post-trained", 2, 7, 2),
        ("video2world-guidance0", "post-trained", 2, 0, 3),
        ("video2world-pretrained", "pre-trained", 2, 3, 4),
        ("image2world-pretrained", "pre-trained", 1, 7, 5),
    ):
        net = ToyNet()
        model = official_model(official, variant, state_t, net, ToyTokenizer(clean))
        video = torch.zeros(1, 3, 1 + 4 * (state_t - 1), height, width, dtype=torch.uint8)
        batch = data_batch(video, num_conditional, prompt, negative)
        latents = model.generate_samples_from_batch(
            batch, n_sample=1, guidance=guidance, seed=seed, is_negative_prompt=True, num_steps=3
        )
        cases[name] = {
            "variant": variant,
            "num_conditional_frames": num_conditional,
            "guidance": guidance,
            "seed": seed,
            "num_steps": 3,
            "latents": pack(latents),
            "calls": net.calls,
        }
    content = {
        "shape": [1, 16, state_t, 2, 4],
        "prompt": pack(prompt),
        "negative": pack(negative),
        "clean_latents": pack(clean),
        "network": "toy_velocity(x, timesteps, crossattn_emb, condition mask) in tools/official_golden.py",
        "cases": cases,
    }
    write(out, "sampling", official, content)
