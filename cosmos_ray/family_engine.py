"""What the engines of the model families built on a base `Generator` share: the generator with the family's net,
built from an entry point's `EngineOptions`, and the checks every call makes of its spec.

A family's engine (`cosmos_ray/multiview.py`, `robot_action.py`, `robot_multiview.py`) subclasses `FamilyEngine`
with its net and its spec format and writes its own `__call__`, which starts with `self.accept(spec)`:

    class MyEngine(FamilyEngine[MySpec]):
        net = MyDiT
        spec_type = MySpec

        def __call__(self, spec, progress=None):
            spec = self.accept(spec)
            ...
"""

from __future__ import annotations

from typing import ClassVar, Generic, Self, TypeVar

import torch

from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.spec_base import SpecBase
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.generator import Generator
from cosmos_ray.models.dit import MiniTrainDiT
from cosmos_ray.parallel import ParallelContext

SpecT = TypeVar("SpecT", bound=SpecBase)


class FamilyEngine(Generic[SpecT]):
    """A family's engine over a base `Generator` whose DiT is the family's `net`, taking specs of `spec_type`."""

    net: ClassVar[type[MiniTrainDiT]]
    spec_type: ClassVar[type[SpecBase]]

    def __init__(self, generator: Generator):
        """`generator`: one of the family's models with its net (`from_options` builds one)."""
        if not isinstance(generator.dit, self.net):
            raise TypeError(
                f"{type(self).__name__} needs a generator whose DiT is a {self.net.__name__}, not "
                f"{type(generator.dit).__name__}"
            )
        self.generator = generator
        self.device = generator.device

    @classmethod
    def from_options(
        cls,
        options: EngineOptions,
        *,
        device: torch.device | str | None = None,
        parallel: ParallelContext | None = None,
    ) -> Self:
        """The engine an entry point's `EngineOptions` describe, on one rank of `parallel`'s group if given."""
        return cls(Generator.from_options(options, device=device, parallel=parallel, net=cls.net))

    def accept(self, spec: Spec) -> SpecT:
        """`spec` if this engine can run it: TypeError for another format, SpecError (naming the sample and the
        field) for what the model cannot generate; the spec's weights (its checkpoint, its adapters) made current."""
        if not isinstance(spec, self.spec_type):
            raise TypeError(
                f"model {self.generator.info.model.name} reads {self.spec_type.__name__} specs, not "
                f"{type(spec).__name__}; parse specs with cosmos_ray.core.spec_formats.parse_spec(..., model=...)"
            )
        self.generator.info.model.check_spec(spec)
        self.generator.use_weights_of(spec)
        return spec  # type: ignore[return-value]  # isinstance of spec_type, which the subclass binds to SpecT
