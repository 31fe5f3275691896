"""The record of a generated video: what made it (model, weights, adapters, precision, layout) and how long each
stage took. The metadata of every `GenerationResult`, written beside the video by the outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cosmos_ray.core.spec_formats import Spec

if TYPE_CHECKING:
    from cosmos_ray.generator import Generator


def video_record(
    generator: Generator, spec: Spec, frames: np.ndarray, timings: dict[str, float], chunks: Sequence[dict] = ()
) -> dict:
    """The record of a video `generator` made from `spec` (frames uint8 (T, H, W, 3)); `chunks`: one record per
    window of an autoregressive one."""
    num_frames, height, width, _ = frames.shape
    metadata = {
        "sample_id": spec.sample_id,
        "spec": spec.to_dict(),
        "seed": spec.seed,
        "model": generator.info.model.name,
        "weights": generator.info.weights,
        "resolution": [height, width],
        "num_frames": num_frames,
        "fps": spec.fps,
        "num_steps": spec.num_steps,
        "evaluations": generator.sampler.num_evaluations(spec.num_steps),
        "guidance": spec.guidance if generator.sampler.uses_guidance else 0,
        "device": str(generator.device),
        "dtype": str(generator.dtype).removeprefix("torch."),
        "world_size": 1 if generator.parallel is None else generator.parallel.world_size,
        "offload": str(generator.offload),
        "attention": str(generator.dit.quantized_attention.precision),
        "linears": generator.info.linear_precision,
        "timings_s": {stage: round(seconds, 4) for stage, seconds in timings.items()},
    }
    if generator.info.checkpoint is not None:
        metadata["checkpoint"] = generator.info.checkpoint.to_dict()
    if generator.adapter_records:
        metadata["loras"] = [dict(record) for record in generator.adapter_records]
    if chunks:
        metadata["chunks"] = list(chunks)
    return metadata
