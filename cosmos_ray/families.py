"""Model families: which engine runs the models of each family.

A family is a kind of model with its own networks and generation loop. The Cosmos-Predict2.5 base models
(text2world, image2world, video2world: `Generator`) are the family "base", the 7-camera driving model the family
"multiview" (`MultiviewEngine`), the action-conditioned robot model the family "action-cond" (`ActionEngine`).
Every official model (`cosmos_ray.core.registry.OfficialModel`) names its family, and `load_engine` builds the
engine of the family of `options.model`: the local CLI and every rank of a GPU group call it, so a new family runs
in every entry point once it is registered here.

An engine takes one spec and returns its video (`Engine`); how it gets there is the family's business.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.progress import Progress
from cosmos_ray.core.registry import ACTION_FAMILY, BASE_FAMILY, CAMERA_MULTIVIEW_FAMILY, MULTIVIEW_FAMILY, get_model
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.generator import Generator
from cosmos_ray.multiview import MultiviewEngine
from cosmos_ray.parallel import ParallelContext
from cosmos_ray.robot_action import ActionEngine
from cosmos_ray.robot_multiview import RobotMultiviewEngine


class Engine(Protocol):
    """What a family's engine does: one spec in, its video out, on `device`."""

    device: torch.device

    def __call__(self, spec: Spec, progress: Progress | None = None) -> GenerationResult | None:
        """The spec's video; None on ranks other than 0 of a parallel group (every rank must be called). A spec
        of another family's format (`cosmos_ray.core.spec_formats.spec_class`) raises TypeError."""
        ...


# Builds a family's engine from the entry point's options, on a device (None: its default) and, in a GPU
# group, with the group's parallel context.
EngineLoader = Callable[[EngineOptions, torch.device | str | None, ParallelContext | None], Engine]


def _load_base(options: EngineOptions, device: torch.device | str | None, parallel: ParallelContext | None) -> Engine:
    return Generator.from_options(options, device=device, parallel=parallel)


def _load_multiview(
    options: EngineOptions, device: torch.device | str | None, parallel: ParallelContext | None
) -> Engine:
    return MultiviewEngine.from_options(options, device=device, parallel=parallel)


def _load_action(options: EngineOptions, device: torch.device | str | None, parallel: ParallelContext | None) -> Engine:
    return ActionEngine.from_options(options, device=device, parallel=parallel)


def _load_robot_multiview(
    options: EngineOptions, device: torch.device | str | None, parallel: ParallelContext | None
) -> Engine:
    return RobotMultiviewEngine.from_options(options, device=device, parallel=parallel)


FAMILIES: dict[str, EngineLoader] = {
    BASE_FAMILY: _load_base,
    MULTIVIEW_FAMILY: _load_multiview,
    ACTION_FAMILY: _load_action,
    CAMERA_MULTIVIEW_FAMILY: _load_robot_multiview,
}


def register_family(name: str, loader: EngineLoader) -> None:
    """Make the engine of family `name` known; ValueError if the name is taken."""
    if name in FAMILIES:
        raise ValueError(f"model family {name!r} is already registered")
    FAMILIES[name] = loader


def load_engine(
    options: EngineOptions, *, device: torch.device | str | None = None, parallel: ParallelContext | None = None
) -> Engine:
    """The engine of `options.model`'s family, built from `options`."""
    model = get_model(options.model)
    if model.family not in FAMILIES:
        raise ValueError(f"model {model.name!r} is of family {model.family!r}, which no engine is registered for")
    return FAMILIES[model.family](options, device, parallel)
