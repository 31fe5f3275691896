"""Model offloading: keep a model on the CPU and move it to the GPU only while it runs.

`Offloader` moves the models that an `OffloadConfig` (cosmos_ray/offload_config.py: the official three switches)
names. An offloaded model's weights are on the GPU only during its stage, so the peak is that of the largest
stage instead of the sum of every resident model. The official inference brings the text encoder back to the
GPU at the end of each generation; here it stays on the CPU until a prompt that is not in the embedding cache
needs it, which gives the same peak.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import nn


class Offloader:
    """Places modules on `device`, or on `home` (the CPU) when offloaded, and brings an offloaded module to
    `device` only for the block that runs it. Modules move in place (`nn.Module.to`), so wrappers that hold
    them (e.g. `ParallelDiT`) follow."""

    def __init__(self, device: torch.device | str, home: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.home = torch.device(home)

    def place(self, modules: Sequence[nn.Module], offloaded: bool) -> None:
        """Puts offloaded `modules` where they wait between stages (`home`); others stay on the device."""
        if offloaded:
            for module in modules:
                module.to(self.home)

    @contextmanager
    def running(self, modules: Sequence[nn.Module], offloaded: bool) -> Iterator[None]:
        """Offloaded `modules` on `device` inside the block, back on `home` after it."""
        with self.on_demand(modules, offloaded) as bring, bring():
            yield

    @contextmanager
    def on_demand(
        self, modules: Sequence[nn.Module], offloaded: bool
    ) -> Iterator[Callable[[], AbstractContextManager[None]]]:
        """Yields `bring`: entering `bring()` puts offloaded `modules` on `device` (the first time); they go
        back to `home` when this block ends. For a stage that may not need its model at all."""
        brought = False

        @contextmanager
        def bring() -> Iterator[None]:
            nonlocal brought
            if offloaded and not brought:
                for module in modules:
                    module.to(self.device)
                brought = True
            yield

        try:
            yield bring
        finally:
            if brought:
                for module in modules:
                    module.to(self.home)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()  # hand the freed blocks back, so the next stage can use them
