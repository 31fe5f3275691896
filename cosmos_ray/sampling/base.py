"""What the generator asks of a sampler: the `Sampler` interface, the velocity model it drives, its error.

A sampler is one denoising loop with its recipe (schedule, solver, noise): it draws the initial noise of a
seed and runs the steps from it to clean latents, calling the velocity model (the DiT, or a parallel
group's `ParallelDiT`) once per evaluation. The generator knows no loop by name: an official model's
`sampler_recipe` picks one from `cosmos_ray.sampling.registry.SAMPLERS`, and the generator reads what it
needs from these attributes (whether to encode a negative prompt, whether conditioned specs can run, how
many evaluations a run costs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor


class VelocityModel(Protocol):
    def __call__(self, x: Tensor, timesteps: Tensor, crossattn_emb: Tensor, *, condition_mask: Tensor) -> Tensor:
        """x (B, C, T, H, W), timesteps (B, T) (the net multiplies them by its `timestep_scale`), crossattn_emb
        (B, L, D), condition_mask (B, 1, T, H, W) -> velocity (B, C, T, H, W)."""


class SamplingError(RuntimeError):
    """The sampling loop produced non-finite latents."""


class Sampler(ABC):
    """One denoising loop and its recipe.

    Implementations set the two class attributes and keep their math in their own module; registering one
    under a recipe name (`cosmos_ray.sampling.registry.register_sampler`) makes it available to models.
    """

    # Takes a negative prompt and `guidance`. False: the generator encodes the prompt only, passes no
    # negative embedding, and records guidance 0 in the metadata.
    uses_guidance: bool
    # Can hold clean conditional latent frames (image2world, video2world). False: conditioned specs are refused.
    holds_conditional_frames: bool

    @abstractmethod
    def initial_noise(self, seed: int, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """The recipe's initial latents for `seed`: float32 normals of `shape` (1, C, T, H, W) on `device`."""

    @abstractmethod
    def num_evaluations(self, num_steps: int) -> int:
        """Velocity-model evaluations (each one or two passes) of a run of `num_steps` steps."""

    @abstractmethod
    def sample(
        self,
        model: VelocityModel,
        noise: Tensor,
        prompt_embedding: Tensor,
        negative_embedding: Tensor | None,
        *,
        num_steps: int,
        guidance: float,
        conditional_latents: Tensor | None = None,
        timestep_scale: float,
        model_dtype: torch.dtype = torch.float32,
        progress: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Runs the loop from `noise` (B, C, T, H, W) to clean latents of the same shape, float32.

        `prompt_embedding` / `negative_embedding`: (B, L, D) text embeddings (the negative one None when the
        sampler uses no guidance or `guidance` is 0). `conditional_latents` (B, C, Tc, H, W): clean latents
        of the first Tc frames, held clean. `timestep_scale`: the net's, which it multiplies its timestep
        input by. The model runs in `model_dtype`. `progress(step, total)` is called after every step.
        """
