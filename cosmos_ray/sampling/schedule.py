"""Rectified-flow sigma schedules of Cosmos-Predict2.5 and the DiT timesteps that go with them.

A sigma here is flow time: x_sigma = (1 - sigma) * x0 + sigma * noise, 1 = pure noise, 0 = clean.
Two schedules exist in the official release:

- "karras" (post-trained 2B): EDM's Karras schedule over EDM sigmas in [sigma_min, sigma_max] with rho,
  mapped to flow time by s / (1 + s). `num_steps` + 1 points, so 35 steps are 36 model evaluations.
- "shift" (pre-trained 2B): `num_steps` points evenly spaced in [0.999, 0), warped by
  shift * s / (1 + (shift - 1) * s). 35 steps are 35 model evaluations.

Both end with a final sigma of 0, which the solver steps to but never evaluates the model at.

DiT timesteps are in the units the official sampler uses, flow time x 1000; the DiT multiplies them by its
`timestep_scale` (0.001). The official sampler hands it the integers int(1000 * sigma), so the network sees
sigma truncated to three decimals; diffusers' pipeline hands it the exact sigma.
`ScheduleConfig.quantize_timesteps` selects between the two (on by default, as the official code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

NUM_TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class ScheduleConfig:
    kind: Literal["karras", "shift"] = "karras"
    sigma_max: float = 200.0  # karras: EDM sigma range before mapping to flow time
    sigma_min: float = 0.01
    rho: float = 7.0
    shift: float = 5.0  # shift schedule only
    quantize_timesteps: bool = True  # DiT timesteps int(1000 * sigma) as official; False: 1000 * sigma


@dataclass(frozen=True)
class Schedule:
    """Flow times of one sampling run.

    `sigmas` holds one value per model evaluation followed by the final 0.0, rounded to float32 as the
    official scheduler stores them; `timesteps` holds the DiT timestep (flow time x 1000) of each evaluation.
    """

    sigmas: tuple[float, ...]
    timesteps: tuple[float, ...]

    @property
    def num_evaluations(self) -> int:
        return len(self.timesteps)


def karras_flow_sigmas(num_steps: int, sigma_max: float, sigma_min: float, rho: float) -> np.ndarray:
    """EDM Karras sigmas (num_steps + 1 points, high to low) mapped to flow time; float64."""
    ramp = np.arange(num_steps + 1) / num_steps
    max_inv_rho = sigma_max ** (1 / rho)
    min_inv_rho = sigma_min ** (1 / rho)
    edm_sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return edm_sigmas / (1 + edm_sigmas)


def shifted_flow_sigmas(num_steps: int, shift: float) -> np.ndarray:
    """num_steps flow times evenly spaced from the training maximum towards 0, then shifted; float64."""
    train_sigma_max = float(np.float32(1 - 1 / NUM_TRAIN_TIMESTEPS))  # the official scheduler's float32 0.999
    sigmas = np.linspace(train_sigma_max, 0.0, num_steps + 1)[:-1]
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def make_schedule(config: ScheduleConfig, num_steps: int) -> Schedule:
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if config.kind == "karras":
        sigmas = karras_flow_sigmas(num_steps, config.sigma_max, config.sigma_min, config.rho)
    elif config.kind == "shift":
        sigmas = shifted_flow_sigmas(num_steps, config.shift)
    else:
        raise ValueError(f"unknown schedule kind {config.kind!r}; expected 'karras' or 'shift'")
    sigmas32 = np.append(sigmas, 0.0).astype(np.float32)
    if config.quantize_timesteps:
        timesteps = np.trunc(sigmas * NUM_TRAIN_TIMESTEPS)  # truncated in float64, as official
    else:
        timesteps = sigmas32[:-1].astype(np.float64) * NUM_TRAIN_TIMESTEPS
    return Schedule(sigmas=tuple(sigmas32.tolist()), timesteps=tuple(timesteps.tolist()))
