"""Shared by the VAE tests: a random-weight VAE and the relative error."""

from __future__ import annotations

import torch

from cosmos_ray.models.vae import VAEConfig, WanVAE

TINY = VAEConfig.preset("tiny")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def random_vae(cfg: VAEConfig = TINY, seed: int = 0) -> WanVAE:
    """A VAE with random weights; norm gains and biases randomized too, so a misplaced one shows."""
    torch.manual_seed(seed)
    vae = WanVAE(cfg).eval()
    with torch.no_grad():
        for name, param in vae.named_parameters():
            if name.endswith("gamma"):
                param.copy_(1 + 0.2 * torch.randn_like(param))
            elif name.endswith("bias"):
                param.copy_(0.1 * torch.randn_like(param))
    return vae
