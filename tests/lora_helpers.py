"""What the LoRA and own-checkpoint tests share: peft itself (the oracle of the LoRA math) injected into a tiny DiT
with the official targets, and adapter files in the official layout taken from it."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch
from torch import nn

from cosmos_ray.models.dit import MiniTrainDiT
from cosmos_ray.models.lora import OFFICIAL_TARGETS


def peft_dit(dit: MiniTrainDiT, adapters: Sequence[tuple[str, int, float, float]], seed: int = 0) -> nn.Module:
    """A copy of `dit` with peft LoRA adapters (name, rank, alpha, scale) on the official targets, all active,
    each with random A and B (peft zero-initializes B)."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    net: nn.Module = copy.deepcopy(dit)
    for name, rank, alpha, _ in adapters:
        config = LoraConfig(r=rank, lora_alpha=int(alpha), target_modules=list(OFFICIAL_TARGETS))
        net = inject_adapter_in_model(config, net, adapter_name=name)
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, LoraLayer):
            module.set_adapter([name for name, *_ in adapters])
            for name, _, _, scale in adapters:
                for factor in (module.lora_A[name], module.lora_B[name]):
                    weight = cast(torch.Tensor, factor.weight)
                    weight.data = torch.randn(tuple(weight.shape), generator=generator) * 0.05
                module.set_scale(name, scale)
    return net.eval().requires_grad_(False)


def official_lora_keys(peft_net: nn.Module, name: str, prefix: str = "net.") -> dict[str, torch.Tensor]:
    """The adapter `name` of a peft net as the official checkpointer saves it: `lora_A.default.weight` keys
    under `net.` (the official adapter is always called "default")."""
    return {
        prefix + key.replace(f".{name}.", ".default."): value.clone()
        for key, value in peft_net.state_dict().items()
        if f".lora_A.{name}." in key or f".lora_B.{name}." in key
    }


def official_lora_checkpoint(peft_net: nn.Module, name: str, prefix: str = "net.") -> dict[str, torch.Tensor]:
    """A LoRA-trained checkpoint: the base weights (peft's `.base_layer.` removed, as the official checkpointer
    does) beside the LoRA factors of adapter `name`."""
    state = {
        prefix + key.replace(".base_layer.", "."): value.clone()
        for key, value in peft_net.state_dict().items()
        if ".lora_" not in key
    }
    return state | official_lora_keys(peft_net, name, prefix)


def save(state: dict[str, torch.Tensor], path: Path) -> str:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return str(path)
