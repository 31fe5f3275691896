"""Media files: images and videos read from any URL, generated frames written as mp4. No torch.

Inputs are read from any fsspec URL (local paths, `file://`, `s3://`, `gs://`, ...); `http(s)://` only when
the caller's `Storage` allows it. Frames are uint8 (T, H, W, 3) RGB throughout. The model-side preparation of
conditioning frames (the reference's resize and crop) is `cosmos_ray.conditioning`; this module stays free of
torch so that the Ray driver side (the writer stage, the Serve ingress) can use it.
"""

from __future__ import annotations

import io
import os
import posixpath
import tempfile
from collections import deque
from urllib.parse import urlsplit

import imageio_ffmpeg
import numpy as np
from PIL import Image

from cosmos_ray.core.storage import HTTP_SCHEMES, Storage, is_local, url_scheme

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_EXTENSIONS = (".mp4",)
INPUT_EXTENSIONS = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS  # what `input_path` may name


class MediaError(ValueError):
    """A conditioning input that cannot be used, or frames that cannot be written; names the sample."""


class UnreadableMediaError(MediaError):
    """An input that could not be read or decoded; its message quotes the library (a decoder's output, paths of
    the server), so Serve tells its client only that the input is unreadable and logs the rest."""


def read_image(url: str, *, storage: Storage = Storage()) -> np.ndarray:
    """The image at `url` as uint8 (1, H, W, 3) RGB (alpha dropped, as the reference keeps 3 channels)."""
    with Image.open(io.BytesIO(storage.read_bytes(url))) as image:
        return np.array(image.convert("RGB"))[None]


def read_video(url: str, *, last: int | None = None, storage: Storage = Storage()) -> np.ndarray:
    """The frames of the video at `url` as uint8 (T, H, W, 3) RGB, decoded by ffmpeg.

    With `last`, only the last `last` frames are kept while decoding (fewer if the video is shorter).
    """
    if is_local(url):
        return _decode_video(url.removeprefix("file://"), last)
    with tempfile.NamedTemporaryFile(suffix=posixpath.splitext(url_path(url))[1]) as local:
        local.write(storage.read_bytes(url))
        local.flush()
        return _decode_video(local.name, last)


def _decode_video(path: str, last: int | None) -> np.ndarray:
    frames = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
    try:
        width, height = next(frames)["size"]
        decoded = (np.frombuffer(frame, dtype=np.uint8).reshape(height, width, 3) for frame in frames)
        kept = deque(decoded, maxlen=last)
    finally:
        frames.close()
    if not kept:
        raise ValueError("the video has no frames")
    return np.stack(kept)


def is_video(url: str) -> bool:
    """Whether `url` names a video (by its extension): `conditioning.read_conditioning` reads its last frames."""
    return posixpath.splitext(url_path(url))[1].lower() in VIDEO_EXTENSIONS


def write_mp4(frames: np.ndarray, fps: int, quality: float = 5) -> bytes:
    """Encode uint8 (T, H, W, 3) frames as H.264 (yuv420p) mp4 bytes; quality 1..10 as imageio's (5: crf 25)."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise MediaError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    num_frames, height, width, _ = frames.shape
    if num_frames == 0 or height % 2 or width % 2:
        raise MediaError(
            f"H.264 yuv420p needs at least one frame and an even height and width, got {num_frames} "
            f"frames of {height}x{width}"
        )
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "video.mp4")
        writer = imageio_ffmpeg.write_frames(
            path,
            (width, height),
            fps=fps,
            quality=quality,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            macro_block_size=1,
        )
        writer.send(None)  # start ffmpeg
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        with open(path, "rb") as f:
            return f.read()


def url_path(url: str) -> str:
    """The path part of `url`, without an http(s) query string."""
    return urlsplit(url).path if url_scheme(url) in HTTP_SCHEMES else url
