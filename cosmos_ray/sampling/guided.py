"""The base models' sampling loop (`GuidedSampler`, recipes "post-trained" and "pre-trained"): initial noise,
held conditional frames, guidance, UniPC.

One loop serves text2world, image2world and video2world. Conditional latent frames (0, 1 or 2 leading
frames) are held clean: the model always sees the clean frames there (with their own timestep and a
condition-mask channel of 1), and their velocity is replaced by the straight-path velocity
`noise - clean`, so the solver carries them along the same path as the reference.

Guidance follows the official video2world model: `v = cond + g * (cond - uncond)`, with the conditional
and unconditional (negative-prompt) passes in one batch of 2. `g == 0` is exactly the conditional
prediction, so the unconditional pass is skipped. (diffusers' pipeline skips it for every g <= 1, so at
g == 1 it returns `cond` where the reference returns `2 * cond - uncond`.)

The velocity model is passed in, so a context-parallel DiT can stand in for the plain one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from cosmos_ray.sampling.base import Sampler, SamplingError, VelocityModel
from cosmos_ray.sampling.registry import register_sampler
from cosmos_ray.sampling.schedule import ScheduleConfig, make_schedule
from cosmos_ray.sampling.unipc import UniPCSolver

VARIANTS = ("post-trained", "pre-trained")


@dataclass(frozen=True)
class SamplerConfig:
    """Sampling recipe of a Cosmos-Predict2.5 base checkpoint (from its official experiment config).

    `preset("post-trained")`: the 2B post-trained recipe; `preset("pre-trained")`: the 2B pre-trained one,
    which the 14B checkpoints share (`cosmos_ray.core.registry`)."""

    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # DiT timestep (flow time x 1000) of the held conditional frames; None: the noisy frames' timestep.
    conditional_frame_timestep: float | None = 0.1

    @classmethod
    def preset(cls, variant: str) -> SamplerConfig:
        if variant == "post-trained":  # karras schedule, conditional frames at official timestep 0.1
            return cls()
        if variant == "pre-trained":  # shift-5 schedule, conditional frames share the noisy timestep
            return cls(ScheduleConfig(kind="shift", shift=5.0), conditional_frame_timestep=None)
        raise ValueError(f"unknown model variant {variant!r}; expected one of {', '.join(VARIANTS)}")

    def num_evaluations(self, num_steps: int) -> int:
        """DiT evaluations (each one or two passes) of a run of `num_steps` steps."""
        return make_schedule(self.schedule, num_steps).num_evaluations


def initial_noise(seed: int, shape: tuple[int, ...], device: torch.device | str | None = None) -> Tensor:
    """The official initial latents: numpy's legacy RandomState normals in float32, on any device."""
    noise = np.random.RandomState(seed).standard_normal(shape).astype(np.float32)
    return torch.from_numpy(noise).to(device)


def sample(
    model: VelocityModel,
    noise: Tensor,
    prompt_embedding: Tensor,
    negative_embedding: Tensor | None,
    *,
    config: SamplerConfig,
    num_steps: int,
    guidance: float,
    conditional_latents: Tensor | None = None,
    model_dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Runs the sampler from `noise` (B, C, T, H, W) to clean latents of the same shape (float32).

    `prompt_embedding` / `negative_embedding` are (B, L, D) text embeddings; the negative one is only
    used when `guidance != 0`. `conditional_latents` (B, C, Tc, H, W) are the clean latents of the first
    Tc frames. The model gets timesteps in flow time x 1000 and runs in `model_dtype`; latents and solver
    stay float32. `progress(step, num_steps)` is called after every step: the post-trained schedule evaluates
    the model `num_steps + 1` times (as the official sampler does), and its first step takes two evaluations,
    so the count always ends at `num_steps`.
    """
    noise = noise.float()
    batch, _, frames, height, width = noise.shape
    num_held = 0 if conditional_latents is None else conditional_latents.shape[2]
    if num_held > frames:
        raise ValueError(f"{num_held} conditional latent frames do not fit in {frames} latent frames")
    use_uncond = guidance != 0
    if use_uncond and negative_embedding is None:
        raise ValueError(f"guidance {guidance} needs a negative prompt embedding")

    condition_mask = torch.zeros(batch, 1, frames, height, width, device=noise.device)
    condition_mask[:, :, :num_held] = 1.0
    clean = torch.zeros_like(noise)
    if conditional_latents is not None:
        clean[:, :, :num_held] = conditional_latents.float()
    held_velocity = (noise - clean) * condition_mask  # straight path from the clean frames to their noise
    free = 1.0 - condition_mask

    passes = 2 if use_uncond else 1
    context = (
        prompt_embedding
        if negative_embedding is None or not use_uncond
        else torch.cat([prompt_embedding, negative_embedding])
    )
    context = context.to(model_dtype)
    mask_in = condition_mask.repeat(passes, 1, 1, 1, 1).to(model_dtype)

    schedule = make_schedule(config.schedule, num_steps)
    extra_evaluations = schedule.num_evaluations - num_steps  # 1 for the post-trained (karras) schedule, else 0
    solver = UniPCSolver(schedule.sigmas)
    latents = noise
    for step, timestep in enumerate(schedule.timesteps):
        x_in = condition_mask * clean + free * latents
        timesteps = torch.full((batch, frames), timestep, device=noise.device)
        if config.conditional_frame_timestep is not None:
            timesteps[:, :num_held] = config.conditional_frame_timestep
        velocity = model(
            x_in.repeat(passes, 1, 1, 1, 1).to(model_dtype),
            timesteps.repeat(passes, 1),
            context,
            condition_mask=mask_in,
        ).float()
        if use_uncond:
            cond, uncond = velocity.chunk(2)
            velocity = cond + guidance * (cond - uncond)
        velocity = held_velocity + free * velocity
        latents = solver.step(velocity, latents)
        if not torch.isfinite(latents).all():
            raise SamplingError(
                f"non-finite latents after model evaluation {step + 1}/{schedule.num_evaluations} "
                f"(sigma {schedule.sigmas[step]:.4g})"
            )
        if progress is not None and step >= extra_evaluations:
            progress(step + 1 - extra_evaluations, num_steps)
    return latents


@dataclass(frozen=True)
class GuidedSampler(Sampler):
    """`sample` with a recipe: the base models' guided UniPC loop and their RandomState noise."""

    config: SamplerConfig = field(default_factory=SamplerConfig)

    uses_guidance = True
    holds_conditional_frames = True

    def initial_noise(self, seed: int, shape: tuple[int, ...], device: torch.device) -> Tensor:
        return initial_noise(seed, shape, device)

    def num_evaluations(self, num_steps: int) -> int:
        return self.config.num_evaluations(num_steps)

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
        # timestep_scale is the net's own business here: the schedule's timesteps are flow time x 1000
        return sample(
            model,
            noise,
            prompt_embedding,
            negative_embedding,
            config=self.config,
            num_steps=num_steps,
            guidance=guidance,
            conditional_latents=conditional_latents,
            model_dtype=model_dtype,
            progress=progress,
        )


@register_sampler("post-trained")
def post_trained() -> GuidedSampler:
    """The 2B post-trained recipe: karras schedule, conditional frames at timestep 0.1."""
    return GuidedSampler(SamplerConfig.preset("post-trained"))


@register_sampler("pre-trained")
def pre_trained() -> GuidedSampler:
    """The 2B pre-trained recipe, shared by the 14B models: shift-5 schedule, conditional frames at the noisy
    timestep."""
    return GuidedSampler(SamplerConfig.preset("pre-trained"))


@register_sampler("frameinit")
def frameinit() -> GuidedSampler:
    """The camera-conditioned robot model's recipe (`CameraConditionedFrameinitVideo2WorldModelRectifiedFlow`): the
    shift-5 schedule, conditional frames at timestep 0.1."""
    return GuidedSampler(SamplerConfig(ScheduleConfig(kind="shift", shift=5.0), conditional_frame_timestep=0.1))
