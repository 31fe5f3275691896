"""Fixtures `schedules` and `unipc`: the official FlowUniPCMultistepScheduler's sigmas, timesteps and steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tools.golden.harness import Official, pack, write

VARIANTS = {  # as the official experiments configure generate_samples_from_batch (see docs/generation.md)
    "post-trained": {"use_kerras_sigma": True, "conditional_frame_timestep": 0.1},
    "pre-trained": {"use_kerras_sigma": False, "conditional_frame_timestep": -1.0},
}
SHIFT = 5.0  # generate_samples_from_batch's default, which generate_vid2world keeps


def scheduler(official: Official, variant: str, num_steps: int):
    """The model's scheduler as Text2WorldModelRectifiedFlow.__init__ builds it, set up as
    generate_samples_from_batch sets it up."""
    unipc = official.module("predict2.models.fm_solvers_unipc")
    sched = unipc.FlowUniPCMultistepScheduler(num_train_timesteps=1000, shift=1, use_dynamic_shifting=False)
    sched.set_timesteps(num_steps, device="cpu", shift=SHIFT, use_kerras_sigma=VARIANTS[variant]["use_kerras_sigma"])
    return sched


def schedules(official: Official, out: Path) -> None:
    cases = {}
    for variant in VARIANTS:
        for num_steps in (35, 4, 1):
            sched = scheduler(official, variant, num_steps)
            cases[f"{variant}/{num_steps}"] = {
                "sigmas": [float(s) for s in sched.sigmas.tolist()],
                "timesteps": [int(t) for t in sched.timesteps.tolist()],
            }
    write(out, "schedules", official, {"cases": cases})


def fixed_velocity(x: torch.Tensor, timestep: float, direction: torch.Tensor) -> torch.Tensor:
    """The velocity field both sides integrate: depends on the sample and on the (integer) timestep."""
    return 0.3 * x + direction * (0.5 + timestep / 1000.0)


def unipc(official: Official, out: Path) -> None:
    cases = {}
    for variant, num_steps in (("post-trained", 5), ("pre-trained", 4), ("post-trained", 1)):
        sched = scheduler(official, variant, num_steps)
        start = torch.from_numpy(np.random.RandomState(0).standard_normal((1, 2, 3, 2, 4)).astype(np.float32))
        direction = torch.from_numpy(np.random.RandomState(1).standard_normal((1, 2, 3, 2, 4)).astype(np.float32))
        generator = torch.Generator().manual_seed(0)
        latents, steps = start, []
        for t in sched.timesteps:  # as the loop of generate_samples_from_batch calls the scheduler
            velocity = fixed_velocity(latents, float(t), direction)
            latents = sched.step(
                velocity.unsqueeze(0), t, latents.unsqueeze(0), return_dict=False, generator=generator
            )[0].squeeze(0)
            steps.append(pack(latents))
        cases[f"{variant}/{num_steps}"] = {"start": pack(start), "direction": pack(direction), "steps": steps}
    write(out, "unipc", official, {"velocity": "0.3 * x + direction * (0.5 + timestep / 1000)", "cases": cases})
