"""Autoregressive long videos: the official sliding-window layout, its conditioning and its stitching.

The official script (`Video2WorldInference.generate_autoregressive_from_batch`) makes `num_output_frames`
frames from windows of the model's native length (93 frames for state_t 24):

- window k covers the video frames [k * (chunk_size - chunk_overlap), + chunk_size), cut at the video's
  end; the model generates all its native frames and the window keeps its first ones;
- window 0 is conditioned as the spec says (text2world: nothing; image2world: the image; video2world: the
  input video's last frames); window k > 0 on `chunk_overlap` latent frames, which the VAE encodes from the
  pixel frames at the window's start: frames the earlier windows generated, as uint8;
- window k samples with seed + k;
- the video is window 0 whole, then every later window without its first `chunk_overlap` frames.

`chunk_overlap` counts pixel frames in the layout but latent frames in the conditioning. At the default 1
the two agree (latent frame 0 encodes pixel frame 0 alone). Above 1 a window is conditioned on
1 + 4 (overlap - 1) pixel frames from its start, of which only `chunk_overlap` were generated; the official
script reads the others from the clip it was given (`InputClip`) and black past the window's end.
`conditioning_frames` reproduces that, so every accepted spec gives the official video.

The driver (`generate`) holds the finished video as uint8 on the CPU and hands each window only its
conditioning frames, so the device holds one window at a time, however long the video.
`generate_long_video` runs a generator's stages (encode, sample, decode) as those windows. The multiview
engine (`cosmos_ray.multiview`) runs its chunks through the same `windows` layout and `generate` driver, with
frames of all its views at once and one seed for every chunk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from cosmos_ray.core import media
from cosmos_ray.core.progress import Progress
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.core.spec_rules import count_chunks
from cosmos_ray.stages import step_reporter, to_uint8_frames

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import torch

    from cosmos_ray.loading import ModelInfo
    from cosmos_ray.models.vae import WanVAE


class WindowStages(Protocol):
    """The stages a window runs, as `cosmos_ray.generator.Generator` has them (named here, not imported, so the
    generator can call this module without a cycle)."""

    info: ModelInfo
    vae: WanVAE

    @property
    def window_frames(self) -> int: ...

    def resolution(self, spec: GenerationSpec) -> tuple[int, int]: ...

    def timed(self, stage: str, timings: dict[str, float]) -> AbstractContextManager[None]: ...

    def encode_prompts(self, spec: GenerationSpec) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def read_conditioning_frames(self, spec: GenerationSpec, height: int, width: int) -> np.ndarray | None: ...

    def encode_frames(self, frames: np.ndarray) -> torch.Tensor: ...

    def sample_latents(
        self,
        spec: GenerationSpec,
        prompts: tuple[torch.Tensor, torch.Tensor | None],
        conditional: torch.Tensor | None,
        seed: int,
        latent_frames: int,
        size: tuple[int, int],
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class Chunk:
    """One window of the layout, in video frames."""

    index: int  # 0-based
    start: int  # the first video frame the window covers
    end: int  # one past the last: start + chunk_size, cut at the video's end
    num_conditional: int  # latent conditional frames: the spec's for window 0, chunk_overlap after
    seed: int  # the spec's seed + index
    skip: int  # leading frames the video does not take from this window: 0 for window 0, chunk_overlap after

    @property
    def length(self) -> int:
        return self.end - self.start


def plan(spec: GenerationSpec) -> list[Chunk]:
    """The windows of an autoregressive spec, in generation order."""
    return windows(
        spec.num_output_frames, spec.chunk_size, spec.chunk_overlap, spec.num_conditional_frames or 0, spec.seed
    )


def windows(
    num_frames: int, chunk_size: int, chunk_overlap: int, first_conditional: int, seed: int, seed_step: int = 1
) -> list[Chunk]:
    """The windows of a video of `num_frames`: window k covers [k (chunk_size - chunk_overlap), + chunk_size), cut
    at the end, is conditioned on `first_conditional` latent frames (k = 0) or `chunk_overlap` (k > 0), and samples
    with seed + k * `seed_step` (the base models step 1, the multiview model 0)."""
    stride = chunk_size - chunk_overlap
    chunks = []
    for index in range(count_chunks(num_frames, chunk_size, chunk_overlap)):
        start = index * stride
        first = index == 0
        chunks.append(
            Chunk(
                index=index,
                start=start,
                end=min(start + chunk_size, num_frames),
                num_conditional=first_conditional if first else chunk_overlap,
                seed=seed + index * seed_step,
                skip=0 if first else chunk_overlap,
            )
        )
    return chunks


def check_layout(spec: GenerationSpec, chunks: list[Chunk], *, window_frames: int, state_t: int) -> None:
    """The layout fits a model that generates `window_frames` pixel (`state_t` latent) frames at once:
    SpecError naming the field otherwise."""
    if spec.chunk_size > window_frames:
        raise SpecError(
            repr(spec.name),
            "chunk_size",
            f"must be at most {window_frames}, the frames this model generates at once, got {spec.chunk_size}",
        )
    for chunk in chunks:
        if chunk.num_conditional > state_t:
            field = "num_conditional_frames" if chunk.index == 0 else "chunk_overlap"
            raise SpecError(
                repr(spec.name),
                field,
                f"conditions a window on {chunk.num_conditional} latent frames, more than the "
                f"{state_t} this model generates at once",
            )


@dataclass(frozen=True)
class InputClip:
    """The conditioning input as the official script lays it out over the whole video: `frames` from frame 0
    on, then `frames[-1]` repeated (a video input) or black (an image input, and text2world's empty clip)."""

    frames: np.ndarray  # uint8 (F, *frame): the first window's conditioning frames; F = 0 for text2world
    repeat_last: bool

    def frame(self, position: int) -> np.ndarray | None:
        """The clip's frame at a video position; None for black."""
        if position < len(self.frames):
            return self.frames[position]
        if self.repeat_last and len(self.frames):
            return self.frames[-1]
        return None


class Window(Protocol):
    def __call__(self, chunk: Chunk, conditioning: np.ndarray | None) -> np.ndarray:
        """The window's `chunk.length` frames, uint8 (length, *frame), generated with `chunk.seed` from
        `conditioning`: uint8 (1 + r (n - 1), *frame) pixel frames for its n = `chunk.num_conditional`
        latent frames (r: the VAE's temporal compression), None when n = 0. A frame is (H, W, 3), or
        (V, H, W, 3) for the views of the multiview model."""


def conditioning_frames(
    chunk: Chunk, video: np.ndarray, generated: range, clip: InputClip, temporal_compression: int
) -> np.ndarray | None:
    """The pixel frames `chunk` is conditioned on, uint8 (1 + r (n - 1), H, W, 3); None for n = 0.

    They are the video frames from the window's start: the generated ones (`generated`: positions the
    earlier windows wrote), the input clip's elsewhere, black past the window's end.
    """
    if chunk.num_conditional == 0:
        return None
    count = 1 + temporal_compression * (chunk.num_conditional - 1)
    frames = np.zeros((count, *video.shape[1:]), dtype=np.uint8)
    for i, position in enumerate(range(chunk.start, min(chunk.start + count, chunk.end))):
        frame = video[position] if position in generated else clip.frame(position)
        if frame is not None:
            frames[i] = frame
    return frames


def generate(
    chunks: list[Chunk],
    window: Window,
    clip: InputClip,
    *,
    frame_shape: tuple[int, ...],
    temporal_compression: int,
) -> np.ndarray:
    """Runs `window` for every chunk in order and stitches the video, uint8 (T, *frame_shape, 3) on the CPU
    (`frame_shape`: (H, W), or (V, H, W) for several views).

    A window's frames overwrite the video from its first kept frame on, as the official script's canvas:
    so the positions generated before window k are [window 0's conditional frames, window k-1's end).
    """
    video = np.empty((chunks[-1].end, *frame_shape, 3), dtype=np.uint8)
    generated = range(0)
    for chunk in chunks:
        conditioning = conditioning_frames(chunk, video, generated, clip, temporal_compression)
        frames = window(chunk, conditioning)
        if frames.shape != (chunk.length, *frame_shape, 3):
            raise ValueError(f"window {chunk.index} returned frames {frames.shape}, expected {chunk.length} frames")
        video[chunk.start + chunk.skip : chunk.end] = frames[chunk.skip :]
        generated = range(chunks[0].num_conditional, chunk.end)
    return video


def generate_long_video(
    generator: WindowStages,
    spec: GenerationSpec,
    progress: Progress | None = None,
    timings: dict[str, float] | None = None,
    chunks: list[dict] | None = None,
) -> np.ndarray:
    """An autoregressive spec's video, uint8 (num_output_frames, H, W, 3) on the CPU, on every rank of a group.

    The windows of `plan(spec)` one after another, each with `generator`'s stages: a window's latents and
    decoded frames live on the device only while it runs, finished frames are kept as uint8 on the CPU.
    `timings` adds up each stage's seconds; `chunks` receives one record per window (frames, seed,
    conditional frames, seconds).
    """
    generator.info.model.check_spec(spec)
    timings = {} if timings is None else timings
    chunks = [] if chunks is None else chunks
    height, width = generator.resolution(spec)
    layout = plan(spec)
    check_layout(spec, layout, window_frames=generator.window_frames, state_t=generator.info.state_t)
    r = generator.vae.cfg.temporal_compression
    with generator.timed("text_encode", timings):
        prompts = generator.encode_prompts(spec)
    with generator.timed("conditioning", timings):
        inputs = generator.read_conditioning_frames(spec, height, width)
    clip = InputClip(
        np.zeros((0, height, width, 3), np.uint8) if inputs is None else inputs,
        repeat_last=spec.input_path is not None and media.is_video(spec.input_path),
    )

    def window(chunk: Chunk, conditioning: np.ndarray | None) -> np.ndarray:
        start = time.perf_counter()
        report = step_reporter(progress, chunk.index + 1, len(layout))
        with generator.timed("conditioning", timings):
            conditional = None if conditioning is None else generator.encode_frames(conditioning)
        with generator.timed("sampling", timings):
            latents = generator.sample_latents(
                spec, prompts, conditional, chunk.seed, generator.info.state_t, (height, width), report
            )  # (1, C, state_t, H/8, W/8)
        with generator.timed("decode", timings):
            # The decoder is causal: the first latent frames decode to the first pixel frames exactly,
            # so only those that cover the window's frames are decoded.
            video = generator.decode(latents[:, :, : 1 + math.ceil((chunk.length - 1) / r)])  # (1, 3, >= length, H, W)
            frames = to_uint8_frames(video[0])[: chunk.length]  # (length, H, W, 3)
        chunks.append(
            {
                "frames": [chunk.start, chunk.end],
                "seed": chunk.seed,
                "conditional_frames": chunk.num_conditional,
                "seconds": round(time.perf_counter() - start, 4),
            }
        )
        return frames

    return generate(layout, window, clip, frame_shape=(height, width), temporal_compression=r)
