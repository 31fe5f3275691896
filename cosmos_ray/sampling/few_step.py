"""The few-step sampler of the distilled Cosmos-Predict2.5-2B (DMD2 in TrigFlow time): `FewStepSampler`,
recipe "few-step".

TrigFlow time t in [0, pi/2] puts a sample at x_t = cos(t) x0 + sin(t) eps (sigma_data 1). The student is
the usual DiT, a rectified-flow velocity model; the official denoiser (`RectifiedFlow_sCMWrapper`) feeds it
the rectified-flow sample of the same point, x_t / (cos t + sin t) = (1 - tau) x0 + tau eps, at flow time
tau = sin t / (cos t + sin t), and reads the clean prediction x0 = x_t / (cos t + sin t) - tau v.

Each step denoises to x0 and re-noises it to the next time with the *initial* noise, not fresh noise:
x = cos(t') x0 + sin(t') eps0. The last step returns x0. The four times the checkpoint was distilled for
are pi/2, atan 15, atan 5, atan 5/3 (flow times 1, 15/16, 5/6, 5/8: the uniform 1, 0.75, 0.5, 0.25 shifted
by 5). A spec's `num_steps` n uses the first min(n, 4) of them, as the official `selected_sampling_time[:n]`
does, so the default 35 gives the 4-step sampler.

No guidance: the teacher's guidance is distilled into the student, and the official sampler ignores
`guidance` and never uses the negative prompt. The initial noise is `torch.randn` from a
`torch.Generator(device).manual_seed(seed)` (the base models use numpy's RandomState): bit-identical to the
official noise on CUDA; on a CPU, torch's CPU generator gives other (but reproducible) values.

Precision as the official loop: the state is kept in float64 between steps and rounded to float32 as the
denoiser's input, the coefficients are float64, the net gets its input and its flow time in the model dtype.
Like the official loop, non-finite latents do not stop the run: the result goes through `torch.nan_to_num`
(NaN -> 0, +-inf -> the largest float32), with a warning in the log. Checked bit for bit against the
official loop by the `distilled` golden (tests/test_official_distilled.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from cosmos_ray.core.registry import FEW_STEP
from cosmos_ray.sampling.base import HeldFrames, Sampler, VelocityModel
from cosmos_ray.sampling.registry import register_sampler

log = logging.getLogger(__name__)

# TrigFlow times of the distilled checkpoint's steps (`selected_sampling_time` of its experiment).
DISTILLED_TIMES = (math.pi / 2, math.atan(15), math.atan(5), math.atan(5 / 3))


@dataclass(frozen=True)
class FewStepConfig:
    """Sampling recipe of a distilled checkpoint: the TrigFlow times it was distilled for."""

    trigflow_times: tuple[float, ...] = DISTILLED_TIMES

    def times(self, num_steps: int) -> tuple[float, ...]:
        """The first `num_steps` times (all of them when `num_steps` exceeds their number)."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be at least 1, got {num_steps}")
        return self.trigflow_times[:num_steps]

    def num_evaluations(self, num_steps: int) -> int:
        return len(self.times(num_steps))


def flow_time(trigflow_time: float) -> float:
    """tau = sin t / (cos t + sin t): the rectified-flow time of TrigFlow time t (sigma_data 1)."""
    return math.sin(trigflow_time) / (math.cos(trigflow_time) + math.sin(trigflow_time))


def initial_noise(seed: int, shape: tuple[int, ...], device: torch.device | str) -> Tensor:
    """The official distilled sampler's noise: float32 normals from a torch generator on `device`."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)


def sample_few_step(
    model: VelocityModel,
    noise: Tensor,
    prompt_embedding: Tensor,
    *,
    config: FewStepConfig,
    num_steps: int,
    timestep_scale: float,
    model_dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Runs the distilled sampler from `noise` (B, C, T, H, W) to clean latents (float32, same shape).

    `prompt_embedding` (B, L, D) is the only text input. `timestep_scale` is the net's (the DiT multiplies
    its timestep input by it), so the net sees the flow time itself. No frame is held (text2world only).
    """
    noise = noise.float()
    batch, _, frames, height, width = noise.shape
    context = prompt_embedding.to(model_dtype)
    condition_mask = noise.new_zeros(batch, 1, frames, height, width, dtype=model_dtype)
    times = config.times(num_steps)
    x = noise.double()
    for step, t in enumerate(times):
        x_in = x.float()  # the official denoiser's input is the float32 state
        scale = 1.0 / (math.cos(t) + math.sin(t))  # c_in = c_skip of the official wrapper
        tau = flow_time(t)  # c_noise = -c_out
        timesteps = torch.full((batch, frames), tau, dtype=torch.float64, device=noise.device)
        timesteps = timesteps.to(model_dtype).double() / timestep_scale
        velocity = model(
            (x_in.double() * scale).to(model_dtype), timesteps, context, condition_mask=condition_mask
        ).float()
        x0 = scale * x_in.double() - tau * velocity.double()
        if step + 1 < len(times):
            t_next = times[step + 1]
            x = math.cos(t_next) * x0 + math.sin(t_next) * noise  # the second term in float32, as official
        else:
            x = x0
        if progress is not None:
            progress(step + 1, len(times))
    latents = x.float()
    if not torch.isfinite(latents).all():
        log.warning(
            "few-step sampler: non-finite latents replaced as the official sampler does (NaN -> 0, +-inf -> +-max)"
        )
    return torch.nan_to_num(latents)


@register_sampler(FEW_STEP)
@dataclass(frozen=True)
class FewStepSampler(Sampler):
    """`sample_few_step` with a recipe: no guidance (no negative prompt), no held frames, torch-generator noise."""

    config: FewStepConfig = field(default_factory=FewStepConfig)

    uses_guidance = False
    holds_conditional_frames = False

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
        held: HeldFrames | None = None,
        timestep_scale: float,
        model_dtype: torch.dtype = torch.float32,
        progress: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        # the guidance was distilled into the net: `guidance` and `negative_embedding` are not used
        if held is not None:
            raise ValueError("the few-step (distilled) sampler holds no conditional frames")
        return sample_few_step(
            model,
            noise,
            prompt_embedding,
            config=self.config,
            num_steps=num_steps,
            timestep_scale=timestep_scale,
            model_dtype=model_dtype,
            progress=progress,
        )
