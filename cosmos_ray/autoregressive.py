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

The driver holds the finished video as uint8 on the CPU and hands each window only its conditioning
frames, so the device holds one window at a time, however long the video.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cosmos_ray.core.spec import GenerationSpec, count_chunks


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
    stride = spec.chunk_size - spec.chunk_overlap
    chunks = []
    for index in range(count_chunks(spec.num_output_frames, spec.chunk_size, spec.chunk_overlap)):
        start = index * stride
        first = index == 0
        chunks.append(
            Chunk(
                index=index,
                start=start,
                end=min(start + spec.chunk_size, spec.num_output_frames),
                num_conditional=(spec.num_conditional_frames or 0) if first else spec.chunk_overlap,
                seed=spec.seed + index,
                skip=0 if first else spec.chunk_overlap,
            )
        )
    return chunks


@dataclass(frozen=True)
class InputClip:
    """The conditioning input as the official script lays it out over the whole video: `frames` from frame 0
    on, then `frames[-1]` repeated (a video input) or black (an image input, and text2world's empty clip)."""

    frames: np.ndarray  # uint8 (F, H, W, 3): the first window's conditioning frames; F = 0 for text2world
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
        """The window's `chunk.length` frames, uint8 (length, H, W, 3), generated with `chunk.seed` from
        `conditioning`: uint8 (1 + r (n - 1), H, W, 3) pixel frames for its n = `chunk.num_conditional`
        latent frames (r: the VAE's temporal compression), None when n = 0."""


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
    frame_shape: tuple[int, int],
    temporal_compression: int,
) -> np.ndarray:
    """Runs `window` for every chunk in order and stitches the video, uint8 (T, H, W, 3) on the CPU.

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
