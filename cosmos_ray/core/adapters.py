"""LoRA adapter references: which adapter file, at which strength.

An adapter is named by where its file lives (a local path or any fsspec URL; in Serve, a name from the
deployment's allow-list) and a scale. Several adapters blend: the DiT runs with
W + sum_i(scale_i * alpha_i / rank_i * B_i @ A_i) in every targeted layer (the official inference takes one
LoRA at scale 1, inside its checkpoint). On the command line an adapter is `PATH[:SCALE]` (`--lora`, repeatable);
in a spec, `{"path": ..., "scale": ...}`. Plain data, no torch: the driver side and the spec model use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cosmos_ray.core.storage import resolve_url


@dataclass(frozen=True)
class LoraRef:
    """One adapter to apply: its file (path or URL) and its scale (1.0: as trained)."""

    path: str
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.strip():
            raise ValueError("a LoRA adapter needs a non-empty path")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not math.isfinite(self.scale):
            raise ValueError(f"LoRA scale must be a finite number, got {self.scale!r} for {self.path!r}")
        object.__setattr__(self, "scale", float(self.scale))

    @classmethod
    def parse(cls, text: str) -> LoraRef:
        """`PATH[:SCALE]`: the scale is the part after the last colon when that part is a number, so URLs
        (`s3://bucket/a.safetensors:0.5`) and Windows-free local paths both work."""
        path, sep, tail = text.rpartition(":")
        if sep and path and "/" not in tail:
            try:
                scale = float(tail)
            except ValueError:
                return cls(text)
            return cls(path, scale)
        return cls(text)

    @classmethod
    def from_entry(cls, entry: Any, index: int) -> LoraRef:
        """Entry `index` of a spec's `cosmos_ray_loras` as a `LoraRef`; ValueError saying what is wrong with it."""
        if isinstance(entry, LoraRef):
            return entry
        where = f"entry {index}"
        if not isinstance(entry, dict) or "path" not in entry or not set(entry) <= {"path", "scale"}:
            raise ValueError(f'{where} must be an object {{"path": ..., "scale": ...}} (scale optional), got {entry!r}')
        path, scale = entry["path"], entry.get("scale", 1.0)
        if not isinstance(path, str) or not path.strip():
            raise ValueError(f"{where}: path must be a non-empty string (a file or URL of the adapter), got {path!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise ValueError(f"{where}: scale must be a finite number (1 as trained), got {scale!r}")
        return cls(path, scale)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "scale": self.scale}

    def __str__(self) -> str:
        return f"{self.path}:{self.scale:g}"


def resolve_entry(entry: Any, base_dir: str | None) -> Any:
    """An adapter entry with its relative local path made absolute (anything malformed is left to validation)."""
    well_formed = isinstance(entry, dict) and set(entry) <= {"path", "scale"}
    if well_formed and isinstance(entry.get("path"), str) and entry["path"].strip():
        return {**entry, "path": resolve_url(entry["path"], base_dir)}
    return entry
