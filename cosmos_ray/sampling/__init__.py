"""Rectified-flow sampling of Cosmos-Predict2.5: sigma schedules, the UniPC solver and the guided loop."""

from cosmos_ray.sampling.sampler import SamplerConfig, SamplingError, VelocityModel, initial_noise, sample
from cosmos_ray.sampling.schedule import Schedule, ScheduleConfig, make_schedule
from cosmos_ray.sampling.unipc import UniPCSolver

__all__ = [
    "SamplerConfig",
    "SamplingError",
    "Schedule",
    "ScheduleConfig",
    "UniPCSolver",
    "VelocityModel",
    "initial_noise",
    "make_schedule",
    "sample",
]
