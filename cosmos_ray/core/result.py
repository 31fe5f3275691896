"""What one generation returns. No torch: the Ray side (a GPU group's owner, the batch job's writer stage, the
Serve replica) receives it from rank 0 and must be able to unpickle it without loading the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class GenerationResult:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: int
    metadata: dict[str, Any]  # spec, seed, model, resolution, frame count, timings per stage, ...
