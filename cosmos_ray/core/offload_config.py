"""Which models wait on the CPU between their stages: plain data, no torch, so the Ray driver side (job
options, group and Serve configs) can carry it.

The three switches are the official inference's `offload_diffusion_model`, `offload_tokenizer` (the VAE:
its encoder for the conditioning frames, its decoder for the video, each moved on its own) and
`offload_text_encoder`. They trade host-to-device copies per generation for GPU memory; `Offloader`
(cosmos_ray/offload.py) moves the models they name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OffloadConfig:
    """Which models live on the CPU between their stages (all on the GPU by default)."""

    diffusion_model: bool = False  # the DiT (official `offload_diffusion_model`)
    tokenizer: bool = False  # the VAE encoder and decoder (official `offload_tokenizer`)
    text_encoder: bool = False  # the Reason1 text encoder (official `offload_text_encoder`)

    @classmethod
    def all(cls) -> OffloadConfig:
        return cls(diffusion_model=True, tokenizer=True, text_encoder=True)

    def __str__(self) -> str:
        names = [name for name, on in vars(self).items() if on]
        return "+".join(names) or "none"


NO_OFFLOAD = OffloadConfig()
