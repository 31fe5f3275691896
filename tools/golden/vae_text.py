"""Fixtures `vae` and `text_norm`: the official WanVAE's latent statistics and (de)normalization, and
TextEncoder.mean_normalize."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from tools.golden.harness import Official, pack, write
from tools.golden.tiny_runs import official_vae, tiny_models


@contextlib.contextmanager
def captured(module: torch.nn.Module, pre: bool):
    """Records the input (pre) or output of `module` on each call."""
    seen = []
    if pre:
        handle = module.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    else:
        handle = module.register_forward_hook(lambda mod, args, output: seen.append(output.clone()))
    try:
        yield seen
    finally:
        handle.remove()


def vae(official: Official, out: Path) -> None:
    weights = tiny_models()[1].state_dict()
    cases = {}
    for dtype in (torch.bfloat16, torch.float32):
        wan_vae, tokenizer = official_vae(official, weights, dtype)
        video = torch.from_numpy(np.random.RandomState(0).uniform(-1, 1, (1, 3, 5, 16, 16)).astype(np.float32))
        video = video.to(dtype)
        with captured(wan_vae.model.conv1, pre=False) as moments:
            latents = tokenizer.encode(video)
        given = torch.from_numpy(np.random.RandomState(1).standard_normal((1, 16, 2, 2, 2)).astype(np.float32))
        given = given.to(dtype)
        with captured(wan_vae.model.conv2, pre=True) as denormalized:
            tokenizer.decode(given)
        cases[str(dtype).removeprefix("torch.")] = {
            "mean": pack(wan_vae.scale[0]),
            "inv_std": pack(wan_vae.scale[1]),
            "video": pack(video),
            "conv1_output": pack(moments[0]),
            "latents": pack(latents),
            "given_latents": pack(given),
            "denormalized": pack(denormalized[0]),
        }
    write(out, "vae", official, {"weights": "cosmos-ray tiny preset VAE", "cases": cases})


def text_norm(official: Official, out: Path) -> None:
    encoder = official.module("predict2.text_encoders.text_encoder")
    rng = np.random.RandomState(0)
    hidden = rng.standard_normal((2, 6, 64)).astype(np.float32) * rng.uniform(0.1, 40, (2, 6, 1)) + rng.uniform(
        -5, 5, (2, 6, 1)
    )
    cases = {}
    for dtype in (torch.bfloat16, torch.float32):
        states = torch.from_numpy(hidden.astype(np.float32)).to(dtype)
        cases[str(dtype).removeprefix("torch.")] = {
            "hidden": pack(states),
            "normalized": pack(encoder.TextEncoder.mean_normalize(states)),
        }
    write(out, "text_norm", official, {"cases": cases})
