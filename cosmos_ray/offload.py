"""Model offloading: keep a model on the CPU and move it to the GPU only while it runs.

The three switches are the official inference's `offload_diffusion_model`, `offload_tokenizer` (the VAE:
its encoder for the conditioning frames, its decoder for the video, each moved on its own) and
`offload_text_encoder`. They trade host-to-device copies per generation for GPU memory: an offloaded
model's weights are on the GPU only during its stage, so the peak is that of the largest stage instead of
the sum of every resident model. The official inference brings the text encoder back to the GPU at the
end of each generation; here it stays on the CPU until a prompt that is not in the embedding cache needs
it, which gives the same peak.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class OffloadConfig:
    """Which models live on the CPU between their stages (all on the GPU by default)."""

    diffusion_model: bool = False  # the DiT (official `offload_diffusion_model`)
    tokenizer: bool = False  # the VAE encoder and decoder (official `offload_tokenizer`)
    text_encoder: bool = False  # the Reason1 text encoder (official `offload_text_encoder`)

    @classmethod
    def all(cls) -> OffloadConfig:
        return cls(diffusion_model=True, tokenizer=True, text_encoder=True)

    def __str__(self) -> str:
        names = [name for name, on in vars(self).items() if on]
        return "+".join(names) or "none"


NO_OFFLOAD = OffloadConfig()


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
