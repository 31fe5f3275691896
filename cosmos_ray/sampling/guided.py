"""The guided sampling loop (`GuidedSampler`, recipes "post-trained", "pre-trained" and "multiview"): initial
noise, held conditional frames, guidance, UniPC.

One loop serves text2world, image2world and video2world. Conditional latent frames (`HeldFrames`: the base
models' first 1 or 2, each view's first ones for the multiview model) are held clean: the model always sees
the clean frames there (with their own timestep and a condition-mask channel of 1), and their velocity is
replaced by the straight-path velocity `noise - clean`, so the solver carries them along the same path as the
reference.

Guidance follows the official models, with the conditional and unconditional (negative-prompt) passes in one
batch of 2. The base video2world model: `v = cond + g * (cond - uncond)`; `g == 0` is exactly the conditional
prediction, so the unconditional pass is skipped. (diffusers' pipeline skips it for every g <= 1, so at
g == 1 it returns `cond` where the reference returns `2 * cond - uncond`.) The multiview model:
`v = uncond + g * (cond - uncond)`, both passes at every g (`g == 0` is the unconditional prediction).

The velocity model is passed in, so a context-parallel DiT can stand in for the plain one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from cosmos_ray.sampling.base import HeldFrames, Sampler, SamplingError, VelocityModel
from cosmos_ray.sampling.registry import register_sampler
from cosmos_ray.sampling.schedule import ScheduleConfig, make_schedule
from cosmos_ray.sampling.unipc import UniPCSolver

VARIANTS = ("post-trained", "pre-trained", "multiview")


@dataclass(frozen=True)
class SamplerConfig:
    """Sampling recipe of a Cosmos-Predict2.5 base checkpoint (from its official experiment config).

    `preset("post-trained")`: the 2B post-trained recipe; `preset("pre-trained")`: the 2B pre-trained one,
    which the 14B checkpoints share; `preset("multiview")`: the pre-trained one guided from the unconditional
    pass, the 7-camera model's (`cosmos_ray.core.registry`)."""

    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # DiT timestep (flow time x 1000) of the held conditional frames; None: the noisy frames' timestep.
    conditional_frame_timestep: float | None = 0.1
    # "conditional": v = cond + g (cond - uncond), the unconditional pass skipped at g == 0 (the base models'
    # `Video2WorldModelRectifiedFlow.get_velocity_fn_from_batch`); "unconditional": v = uncond + g (cond - uncond),
    # both passes always (`MultiviewVid2VidModelRectifiedFlow.get_velocity_fn_from_batch`, 7e5ffc83).
    guidance_from: Literal["conditional", "unconditional"] = "conditional"

    @classmethod
    def preset(cls, variant: str) -> SamplerConfig:
        if variant == "post-trained":  # karras schedule, conditional frames at official timestep 0.1
            return cls()
        if variant == "pre-trained":  # shift-5 schedule, conditional frames share the noisy timestep
            return cls(ScheduleConfig(kind="shift", shift=5.0), conditional_frame_timestep=None)
        if variant == "multiview":  # the pre-trained recipe, guided from the unconditional pass
            return cls(
                ScheduleConfig(kind="shift", shift=5.0), conditional_frame_timestep=None, guidance_from="unconditional"
            )
        raise ValueError(f"unknown model variant {variant!r}; expected one of {', '.join(VARIANTS)}")

    def num_evaluations(self, num_steps: int) -> int:
        """DiT evaluations (each one or two passes) of a run of `num_steps` steps."""
        return make_schedule(self.schedule, num_steps).num_evaluations

    def runs_unconditional(self, guidance: float) -> bool:
        """Whether a run with `guidance` evaluates the unconditional pass."""
        return self.guidance_from == "unconditional" or guidance != 0


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
    held: HeldFrames | None = None,
    model_dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Runs the sampler from `noise` (B, C, T, H, W) to clean latents of the same shape (float32).

    `prompt_embedding` / `negative_embedding` are (B, L, D) text embeddings; the negative one is only
    used when `config.runs_unconditional(guidance)`. `held`: the latent frames held clean (None: none).
    The model gets timesteps in flow time x 1000 and runs in `model_dtype`; latents and solver stay float32.
    `progress(step, num_steps)` is called after every step: the post-trained schedule evaluates
    the model `num_steps + 1` times (as the official sampler does), and its first step takes two evaluations,
    so the count always ends at `num_steps`.
    """
    noise = noise.float()
    batch, _, frames, height, width = noise.shape
    if held is not None and held.latents.shape[2] != frames:
        raise ValueError(f"held frames over {held.latents.shape[2]} latent frames, the noise has {frames}")
    use_uncond = config.runs_unconditional(guidance)
    if use_uncond and negative_embedding is None:
        raise ValueError(f"guidance {guidance} needs a negative prompt embedding")

    held_mask = torch.zeros(frames, dtype=torch.bool, device=noise.device) if held is None else held.mask
    condition_mask = held_mask.float().view(1, 1, frames, 1, 1).repeat(batch, 1, 1, height, width)
    clean = torch.zeros_like(noise)
    if held is not None:
        clean = torch.where(condition_mask.bool(), held.latents.float(), clean)
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
            timesteps[:, held_mask] = config.conditional_frame_timestep
        velocity = model(
            x_in.repeat(passes, 1, 1, 1, 1).to(model_dtype),
            timesteps.repeat(passes, 1),
            context,
            condition_mask=mask_in,
        ).float()
        if use_uncond:
            cond, uncond = velocity.chunk(2)
            base = uncond if config.guidance_from == "unconditional" else cond
            velocity = base + guidance * (cond - uncond)
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

    def runs_unconditional(self, guidance: float) -> bool:
        return self.config.runs_unconditional(guidance)

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
        # timestep_scale is the net's own business here: the schedule's timesteps are flow time x 1000
        return sample(
            model,
            noise,
            prompt_embedding,
            negative_embedding,
            config=self.config,
            num_steps=num_steps,
            guidance=guidance,
            held=held,
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


@register_sampler("multiview")
def multiview() -> GuidedSampler:
    """The 7-camera model's recipe: the pre-trained one (shift-5 schedule, conditional frames at the noisy
    timestep) guided from the unconditional pass."""
    return GuidedSampler(SamplerConfig.preset("multiview"))
