"""What the DiT tests share: the tiny config, a DiT with every parameter random, random inputs, and the
relative error they bound."""

from __future__ import annotations

import torch
from torch import nn

from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT

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
