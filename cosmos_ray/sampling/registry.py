"""Samplers by recipe name: the official models' `sampler_recipe` ("post-trained", "pre-trained", "few-step")
and any other a test or an experiment registers.

    @register_sampler("euler")          # in the sampler's own module (imported by cosmos_ray/sampling/__init__.py)
    class EulerSampler(Sampler): ...    # a class or function that builds the sampler with no arguments

    sampler = get_sampler(official.sampler_recipe)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from cosmos_ray.sampling.base import Sampler

SamplerFactory = Callable[[], Sampler]
SAMPLERS: dict[str, SamplerFactory] = {}

Factory = TypeVar("Factory", bound=SamplerFactory)


def register_sampler(name: str) -> Callable[[Factory], Factory]:
    """Decorator: registers a sampler class (or a function returning a sampler) under recipe `name`."""

    def register(factory: Factory) -> Factory:
        if name in SAMPLERS:
            raise ValueError(f"a sampler is already registered as {name!r}")
        SAMPLERS[name] = factory
        return factory

    return register


def get_sampler(name: str) -> Sampler:
    """A new sampler of recipe `name`; ValueError listing the registered recipes otherwise."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler recipe {name!r}; registered: {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[name]()
