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
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class VelocityModel(Protocol):
    def __call__(self, x: Tensor, timesteps: Tensor, crossattn_emb: Tensor, *, condition_mask: Tensor) -> Tensor:
        """x (B, C, T, H, W), timesteps (B, T) (the net multiplies them by its `timestep_scale`), crossattn_emb
        (B, L, D), condition_mask (B, 1, T, H, W) -> velocity (B, C, T, H, W)."""


class SamplingError(RuntimeError):
    """The sampling loop produced non-finite latents."""


@dataclass(frozen=True)
class HeldFrames:
    """Clean latent frames a sampler holds (image2world, video2world, a later autoregressive window): the model
    sees them clean, with a condition-mask channel of 1, and the solver carries them along their straight path.

    `latents` (B, C, T, H, W): clean latents over the whole sequence (only the held frames are read);
    `mask` bool (T,): which latent frames are held. The base models hold their first n frames (`leading`), the
    multiview model each view's first n frames.
    """

    latents: Tensor
    mask: Tensor

    def __post_init__(self) -> None:
        if self.latents.ndim != 5 or self.mask.shape != (self.latents.shape[2],) or self.mask.dtype != torch.bool:
            raise ValueError(
                f"held frames: expected latents (B, C, T, H, W) and a bool mask (T,), got latents "
                f"{tuple(self.latents.shape)} and mask {tuple(self.mask.shape)} {self.mask.dtype}"
            )

    @classmethod
    def leading(cls, conditional: Tensor, frames: int) -> HeldFrames:
        """The first n of `frames` latent frames held: `conditional` (B, C, n, H, W) are their clean latents."""
        held = conditional.shape[2]
        if held > frames:
            raise ValueError(f"{held} conditional latent frames do not fit in {frames} latent frames")
        latents = conditional.new_zeros(*conditional.shape[:2], frames, *conditional.shape[3:])
        latents[:, :, :held] = conditional
        mask = torch.zeros(frames, dtype=torch.bool, device=conditional.device)
        mask[:held] = True
        return cls(latents, mask)

    @property
    def count(self) -> int:
        """Latent frames held."""
        return int(self.mask.sum())


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

    def runs_unconditional(self, guidance: float) -> bool:
        """Whether a run with `guidance` evaluates the unconditional (negative-prompt) pass, so needs the negative
        embedding: by default when the sampler uses guidance and `guidance` is not 0."""
        return self.uses_guidance and guidance != 0

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
        held: HeldFrames | None = None,
        timestep_scale: float,
        model_dtype: torch.dtype = torch.float32,
        progress: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Runs the loop from `noise` (B, C, T, H, W) to clean latents of the same shape, float32.

        `prompt_embedding` / `negative_embedding`: (B, L, D) text embeddings (the negative one None when
        `runs_unconditional(guidance)` is False). `held`: the latent frames held clean (None: none).
        `timestep_scale`: the net's, which it multiplies its timestep input by. The model runs in
        `model_dtype`. `progress(step, total)` is called after every step.
        """
