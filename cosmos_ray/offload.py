"""Model offloading: keep a model on the CPU and move it to the GPU only while it runs.

`Offloader` moves the models that an `OffloadConfig` (cosmos_ray/core/offload_config.py: the official three switches)
names. An offloaded model's weights are on the GPU only during its stage, so the peak is that of the largest
stage instead of the sum of every resident model. The official inference brings the text encoder back to the
GPU at the end of each generation; here it stays on the CPU until a prompt that is not in the embedding cache
needs it, which gives the same peak.

On a GPU the host copies stay put: an offloaded model's tensors wait in pinned (page-locked) host memory, so
bringing a model over is a DMA copy at full PCIe speed, and sending it back copies nothing: inference never
changes a weight, so the module's tensors are pointed at their host copies again and the device copies are
freed (docs/performance.md, "Offloading": the copies went from about 11 s a clip to 0.3 s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import nn

HostCopies = list[tuple[nn.Module, str, str, torch.Tensor]]  # (owner, "param" or "buffer", name, host tensor)


class Offloader:
    """Places modules on `device`, or on `home` (the CPU) when offloaded, and brings an offloaded module to
    `device` only for the block that runs it. Modules move in place (`nn.Module.to`), so wrappers that hold
    them (e.g. `ParallelDiT`) follow.

    `keep_host_copies` (default: on for CUDA) pins the offloaded modules' host tensors and, after a stage,
    points the modules back at them instead of copying the weights back (`module.to(home)`).
    """

    def __init__(
        self, device: torch.device | str, home: torch.device | str = "cpu", keep_host_copies: bool | None = None
    ):
        self.device = torch.device(device)
        self.home = torch.device(home)
        self.keep_host_copies = self.device.type == "cuda" if keep_host_copies is None else keep_host_copies

    def place(self, modules: Sequence[nn.Module], offloaded: bool) -> None:
        """Puts offloaded `modules` where they wait between stages (`home`, pinned where it can be);
        others stay on the device."""
        if offloaded:
            for module in modules:
                module.to(self.home)
                if self.keep_host_copies and torch.cuda.is_available():
                    _pin(module)

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
        host_copies: HostCopies = []

        @contextmanager
        def bring() -> Iterator[None]:
            nonlocal brought
            if offloaded and not brought:
                for module in modules:
                    if self.keep_host_copies:
                        host_copies.extend(_tensors_of(module))
                    module.to(self.device)
                brought = True
            yield

        try:
            yield bring
        finally:
            if brought:
                if self.keep_host_copies:
                    _point_at(host_copies)  # the device copies are freed with their last reference
                else:
                    for module in modules:
                        module.to(self.home)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()  # hand the freed blocks back, so the next stage can use them


def _tensors_of(module: nn.Module) -> HostCopies:
    """Every parameter and buffer tensor of `module` with its owner and name, as they are now."""
    tensors: HostCopies = []
    for owner in module.modules():
        tensors.extend((owner, "param", name, p.data) for name, p in owner._parameters.items() if p is not None)
        tensors.extend((owner, "buffer", name, b) for name, b in owner._buffers.items() if b is not None)
    return tensors


def _point_at(tensors: HostCopies) -> None:
    """Points each parameter and buffer back at the tensor recorded for it (no copy)."""
    for owner, kind, name, tensor in tensors:
        if kind == "param":
            parameter = owner._parameters[name]
            assert parameter is not None
            parameter.data = tensor
        else:
            owner._buffers[name] = tensor


def _pin(module: nn.Module) -> None:
    """Moves `module`'s host tensors into pinned memory (left pageable where the host refuses to pin)."""
    pinned: HostCopies = []
    for owner, kind, name, tensor in _tensors_of(module):
        if tensor.device.type != "cpu" or tensor.is_pinned():
            continue
        try:
            pinned.append((owner, kind, name, tensor.pin_memory()))
        except RuntimeError:  # out of pinnable memory: this tensor stays pageable, the copies only slower
            continue
    _point_at(pinned)
