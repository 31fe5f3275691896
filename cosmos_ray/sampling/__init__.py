"""Rectified-flow sampling of Cosmos-Predict2.5: the `Sampler` interface, the samplers by recipe name, and the
two loops: the base models' guided UniPC loop (`guided.py`, with `schedule.py` and `unipc.py`) and the
distilled model's few-step loop (`few_step.py`).

A sampler module registers itself when imported (`@register_sampler`): a new one is a new file plus its import
below.
"""

from cosmos_ray.sampling import few_step, guided
from cosmos_ray.sampling.base import HeldFrames, Sampler, SamplingError, VelocityModel
from cosmos_ray.sampling.few_step import FewStepConfig, FewStepSampler, sample_few_step
from cosmos_ray.sampling.guided import GuidedSampler, SamplerConfig, initial_noise, sample
from cosmos_ray.sampling.registry import SAMPLERS, get_sampler, register_sampler
from cosmos_ray.sampling.schedule import Schedule, ScheduleConfig, make_schedule
from cosmos_ray.sampling.unipc import UniPCSolver

__all__ = [
    "SAMPLERS",
    "FewStepConfig",
    "FewStepSampler",
    "GuidedSampler",
    "HeldFrames",
    "Sampler",
    "SamplerConfig",
    "SamplingError",
    "Schedule",
    "ScheduleConfig",
    "UniPCSolver",
    "VelocityModel",
    "few_step",
    "get_sampler",
    "guided",
    "initial_noise",
    "make_schedule",
    "register_sampler",
    "sample",
    "sample_few_step",
]
