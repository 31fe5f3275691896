"""Decoding a video with PyAV as the official reader does (`cosmos_ray.core.media.read_video` is the entry).

Its own module so that PyAV is imported only where a video is read: the engine's options, the CLIs and the GPU
machines that never decode an input video do not need the `av` package.
"""

from __future__ import annotations

import io
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from typing import cast

import av
import numpy as np

from cosmos_ray.core.media import MediaError, MediaLimits, UnreadableMediaError


def decode_video(source: str | io.BytesIO, last: int | None, limits: MediaLimits) -> np.ndarray:
    """The frames of `source` as uint8 (T, H, W, 3) rgb24 (only the last `last` when given), checked against
    `limits` from the headers and the compressed packets before any pixel is decoded."""
    try:
        return _decode_frames(source, last, limits)
    except av.FFmpegError as error:
        raise UnreadableMediaError(f"cannot decode it: {error}") from None


def decode_video_start(
    source: str | io.BytesIO, count: Callable[[float], int], limits: MediaLimits
) -> tuple[np.ndarray, float]:
    """The first `count(rate)` frames of `source` (fewer if it is shorter) as uint8 (T, H, W, 3) rgb24, and its
    average frame rate `rate` (the stream's, as decord's `get_avg_fps`), checked against `limits` as
    `decode_video`."""
    try:
        with av.open(source, mode="r") as container:
            stream, packets = _checked_packets(container, limits)
            average = stream.average_rate or stream.guessed_rate
            if not average:
                raise MediaError("the video has no frame rate")
            rate = float(average)
            frames = list(itertools.islice(_decoded(stream, packets), count(rate)))
    except av.FFmpegError as error:
        raise UnreadableMediaError(f"cannot decode it: {error}") from None
    if not frames:
        raise MediaError("the video has no frames")
    return np.stack([frame.to_ndarray(format="rgb24") for frame in frames]), rate


def _decode_frames(source: str | io.BytesIO, last: int | None, limits: MediaLimits) -> np.ndarray:
    with av.open(source, mode="r") as container:
        stream, packets = _checked_packets(container, limits)
        frames = None if last is None else _decode_last(stream, packets, last)
        if frames is None:  # the whole clip, or a stream whose tail cannot be decoded on its own
            frames = list(deque(_decoded(stream, packets), maxlen=last))
    if not frames:
        raise MediaError("the video has no frames")
    return np.stack([frame.to_ndarray(format="rgb24") for frame in frames])


def _checked_packets(
    container: av.container.InputContainer, limits: MediaLimits
) -> tuple[av.VideoStream, list[av.Packet]]:
    """The first video stream and its compressed packets, the stream checked against `limits` from its headers and
    packets before any pixel is decoded."""
    if not container.streams.video:
        raise MediaError("the file has no video stream")
    stream = container.streams.video[0]
    limits.check_pixels(stream.codec_context.width, stream.codec_context.height)
    duration = _duration_s(container, stream)
    limits.check_video(stream.frames, duration)
    packets = [packet for packet in container.demux(stream) if packet.size]  # compressed, no pixels yet
    limits.check_video(len(packets), duration)
    stream.thread_type = "AUTO"
    return stream, packets


def _decode_last(stream: av.VideoStream, packets: list[av.Packet], last: int) -> list[av.VideoFrame] | None:
    """The last `last` frames in presentation order, decoded from the latest keyframe that precedes (in
    decoding order) every one of them and is shown no later than the first; None where timestamps are
    missing or the frames decoded from there are not exactly the ones expected."""
    pts = [packet.pts for packet in packets]  # in decoding order
    if len(pts) <= last or None in pts:
        return None
    known = cast(list[int], pts)
    wanted = sorted(known)[-last:]  # presentation times of the frames to return
    first_needed = min(i for i, time in enumerate(known) if time >= wanted[0])
    starts = [i for i in range(first_needed + 1) if packets[i].is_keyframe and known[i] <= wanted[0]]
    if not starts or starts[-1] == 0:
        return None
    kept = [
        frame for frame in _decoded(stream, packets[starts[-1] :]) if frame.pts is not None and frame.pts >= wanted[0]
    ]
    return kept if [frame.pts for frame in kept] == wanted else None


def _decoded(stream: av.VideoStream, packets: list[av.Packet]) -> Iterator[av.VideoFrame]:
    """The frames of `packets` in the order the decoder gives them (presentation order), then the flush."""
    codec = stream.codec_context
    codec.flush_buffers()
    for packet in [*packets, None]:
        yield from codec.decode(packet)


def _duration_s(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None if container.duration is None else container.duration / av.time_base
