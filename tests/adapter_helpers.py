"""What the per-row adapter tests share: LoRA files in the official key layout for the tiny DiT, and an engine
that records which adapters it was asked to generate each sample with.

`RecordingGenerator` is the tiny `Generator` whose `set_adapters` reads each adapter's file through the engine's
storage and keeps its content hash instead of merging it (the merge itself is tested by the engine's own
tests); the result metadata's `loras` then lists the adapters of each sample, as the engine's does
(`{"path", "scale", "sha256"}`). The batch job and Serve build their engines in Ray worker processes, where a
test's monkeypatch does not reach: `RecordingOptions` carries the engine there. It is an `EngineOptions` whose
class lives in this module, so every process that receives one (a group's rank workers) imports this module
when unpickling it and installs the recording engine as the base models' family there, before `load_engine`
runs. The driver's own processes, which only build it, keep the real engine.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.registry import BASE_FAMILY
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.generator import Generator
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT

# The official LoRA's targets (experiments/base/cosmos_nemo_assets_lora.py): attention projections and MLP.
LORA_TARGETS = (".q_proj", ".k_proj", ".v_proj", ".output_proj", ".mlp.layer1", ".mlp.layer2")


def write_lora(path: Path, *, rank: int = 4, seed: int = 0) -> str:
    """A LoRA for the tiny DiT in the official key layout (`net.<module>.lora_A.default.weight` (rank, in),
    `lora_B` (out, rank)) with random weights, saved as a `.pt`; returns its path."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in MiniTrainDiT(DiTConfig.preset("tiny")).named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(LORA_TARGETS):
            state[f"net.{name}.lora_A.default.weight"] = torch.randn(rank, module.in_features, generator=generator)
            state[f"net.{name}.lora_B.default.weight"] = torch.randn(module.out_features, rank, generator=generator)
    torch.save(state, path)
    return str(path)


def file_sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class RecordingGenerator(Generator):
    """The tiny generator, recording the adapters each sample asks for (with their files' hashes)."""

    def set_adapters(self, loras: Sequence[LoraRef]) -> None:
        self._recorded = [
            {**lora.to_dict(), "sha256": hashlib.sha256(self.storage.read_bytes(lora.path)).hexdigest()}
            for lora in loras
        ]

    def _metadata(
        self, spec: GenerationSpec, frames: np.ndarray, timings: dict[str, float], chunks: list[dict]
    ) -> dict[str, Any]:
        return {**super()._metadata(spec, frames, timings, chunks), "loras": self._recorded}


def load_recording(options: EngineOptions, device: Any, parallel: Any) -> RecordingGenerator:
    """The base family's loader, building a `RecordingGenerator` (in process: monkeypatch it into `FAMILIES`)."""
    return RecordingGenerator.from_options(options, device=device, parallel=parallel)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class RecordingOptions(EngineOptions):
    """`EngineOptions` whose receiving processes generate with `RecordingGenerator` (see the module's doc)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        from cosmos_ray.families import FAMILIES

        FAMILIES[BASE_FAMILY] = load_recording
        self.__dict__.update(state)
