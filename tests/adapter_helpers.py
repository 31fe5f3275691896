"""What the per-row adapter tests share: LoRA files in the official key layout for the tiny DiT."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT

# The official LoRA's targets (experiments/base/cosmos_nemo_assets_lora.py): attention projections and MLP.
LORA_TARGETS = (".q_proj", ".k_proj", ".v_proj", ".output_proj", ".mlp.layer1", ".mlp.layer2")


def write_lora(path: Path, *, rank: int = 4, seed: int = 0) -> str:
    """A LoRA for the tiny DiT in the official key layout (`net.<module>.lora_A.default.weight` (rank, in),
    `lora_B` (out, rank)) with small random weights (the official alpha 32 over a small rank scales them up),
    saved as a `.pt`; returns its path."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in MiniTrainDiT(DiTConfig.preset("tiny")).named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(LORA_TARGETS):
            down = torch.randn(rank, module.in_features, generator=generator)
            up = torch.randn(module.out_features, rank, generator=generator)
            state[f"net.{name}.lora_A.default.weight"] = 0.05 * down
            state[f"net.{name}.lora_B.default.weight"] = 0.05 * up
    torch.save(state, path)
    return str(path)


def file_sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
