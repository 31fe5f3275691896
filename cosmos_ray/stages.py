"""What the stages of a generation share: the stage timer, the sampler's step callback, the conversion of decoded
video to uint8 frames (used by `cosmos_ray.generator` and the window loop of `cosmos_ray.autoregressive`), and a
family's further DiT inputs bound into the velocity model (`with_net_inputs`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from cosmos_ray.core.progress import Progress, Step


@contextmanager
def timed(stage: str, timings: dict[str, float], device: torch.device) -> Iterator[None]:
    """Adds the wall time of a stage to `timings[stage]`, with the device's queued work finished at both ends."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def step_reporter(progress: Progress | None, chunk: int = 1, num_chunks: int = 1) -> Callable[[int, int], None] | None:
    """The sampler's `(step, total)` callback that hands `progress` a `Step` of window `chunk`."""
    if progress is None:
        return None
    return lambda step, total: progress(Step(step, total, chunk, num_chunks))


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3), truncating like the reference's video writer."""
    video = ((video.float() + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0
    return video.to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def with_net_inputs(
    model: Callable[..., torch.Tensor], inputs: Mapping[str, torch.Tensor]
) -> Callable[..., torch.Tensor]:
    """`model` (a velocity model) called with the keyword `inputs` too, each (1, ...) expanded to the batch of the
    call (the sampler's conditional and unconditional passes)."""

    def evaluate(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        batched = {name: value.expand(x.shape[0], *value.shape[1:]) for name, value in inputs.items()}
        return model(x, *args, **kwargs, **batched)

    return evaluate
