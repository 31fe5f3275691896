"""Rectified-flow sampling of Cosmos-Predict2.5: sigma schedules, the UniPC solver, the guided loop and the
distilled model's few-step loop."""

from cosmos_ray.core.registry import OfficialModel
from cosmos_ray.sampling.few_step import FewStepConfig, sample_few_step
from cosmos_ray.sampling.sampler import SamplerConfig, SamplingError, VelocityModel, initial_noise, sample
from cosmos_ray.sampling.schedule import Schedule, ScheduleConfig, make_schedule
from cosmos_ray.sampling.unipc import UniPCSolver


def recipe_config(model: OfficialModel) -> SamplerConfig | FewStepConfig:
    """The sampling recipe of official `model`."""
    return FewStepConfig() if model.few_step else SamplerConfig.preset(model.sampler_recipe)


__all__ = [
    "recipe_config",
    "FewStepConfig",
    "SamplerConfig",
    "SamplingError",
    "Schedule",
    "ScheduleConfig",
    "UniPCSolver",
    "VelocityModel",
    "initial_noise",
    "make_schedule",
    "sample",
    "sample_few_step",
]
