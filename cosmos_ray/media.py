"""Conditioning media in, generated video out.

Inputs are read from any fsspec URL (local paths, `file://`, `s3://`, `gs://`, ...); `http(s)://` only
when the caller allows it. Frames are uint8 (T, H, W, 3) RGB throughout.

Conditioning follows the official `video2world.py` inference script: the input is resized (aspect ratio
kept, bilinear with antialiasing, sizes rounded up) to cover the target and center-cropped to it; an image
becomes the first frame of a clip whose other frames are black; a video contributes its *last*
1 + 4 (n - 1) frames for n latent conditional frames.
"""

from __future__ import annotations

import io
import math
import os
import posixpath
import tempfile
from collections import deque
from urllib.parse import urlsplit

import imageio_ffmpeg
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cosmos_ray import storage
from cosmos_ray.spec import GenerationSpec

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_EXTENSIONS = (".mp4",)
HTTP_SCHEMES = ("http", "https")


class MediaError(ValueError):
    """A conditioning input that cannot be used, or frames that cannot be written; names the sample."""


def read_image(url: str, *, storage_options: dict | None = None) -> np.ndarray:
    """The image at `url` as uint8 (1, H, W, 3) RGB (alpha dropped, as the reference keeps 3 channels)."""
    data = storage.read_bytes(url, storage_options)
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image.convert("RGB"))[None]


def read_video(url: str, *, last: int | None = None, storage_options: dict | None = None) -> np.ndarray:
    """The frames of the video at `url` as uint8 (T, H, W, 3) RGB, decoded by ffmpeg.

    With `last`, only the last `last` frames are kept while decoding (fewer if the video is shorter).
    """
    if storage.is_local(url):
        return _decode_video(url.removeprefix("file://"), last)
    with tempfile.NamedTemporaryFile(suffix=posixpath.splitext(_url_path(url))[1]) as local:
        local.write(storage.read_bytes(url, storage_options))
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


def resize_and_center_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale uint8 (T, h, w, 3) frames to cover (height, width), then crop the center; as the reference.

    The scale is the larger of the two ratios and the scaled size is rounded up; the resize is bilinear
    with antialiasing on float values, rounded back to uint8; the crop offset is rounded half to even.
    """
    in_height, in_width = frames.shape[1:3]
    scale = max(width / in_width, height / in_height)
    size = (math.ceil(scale * in_height), math.ceil(scale * in_width))
    video = torch.tensor(frames).permute(0, 3, 1, 2).float()  # (T, 3, h, w)
    if size != (in_height, in_width):
        video = F.interpolate(video, size=size, mode="bilinear", align_corners=False, antialias=True)
    top = int(round((size[0] - height) / 2.0))
    left = int(round((size[1] - width) / 2.0))
    video = video[:, :, top : top + height, left : left + width].round().to(torch.uint8)
    return video.permute(0, 2, 3, 1).numpy()  # (T, height, width, 3)


def read_conditioning(
    spec: GenerationSpec,
    num_frames: int,
    height: int,
    width: int,
    *,
    storage_options: dict | None = None,
    allow_http: bool = False,
) -> np.ndarray:
    """The first `num_frames` pixel frames of the spec's conditioning clip, uint8 (num_frames, H, W, 3).

    An image gives itself followed by black frames; a video gives its last `num_frames` frames.
    """
    url = spec.input_path
    if url is None:
        raise MediaError(f"sample {spec.name!r}: {spec.inference_type} needs an input_path")
    if storage.url_scheme(url) in HTTP_SCHEMES and not allow_http:
        raise MediaError(
            f"sample {spec.name!r}: input_path {url} is an http(s) URL, which is off by default "
            "(allow it explicitly, or copy the input to a file system or bucket)"
        )
    extension = posixpath.splitext(_url_path(url))[1].lower()
    try:
        if extension in IMAGE_EXTENSIONS:
            frames = read_image(url, storage_options=storage_options)
        elif extension in VIDEO_EXTENSIONS:
            frames = read_video(url, last=num_frames, storage_options=storage_options)
        else:
            raise ValueError(
                f"extension {extension!r} is neither an image ({', '.join(IMAGE_EXTENSIONS)}) "
                f"nor a video ({', '.join(VIDEO_EXTENSIONS)})"
            )
    except (OSError, ValueError, RuntimeError) as error:
        reason = error.reason if isinstance(error, storage.StorageError) else error  # it names the URL already
        raise MediaError(f"sample {spec.name!r}: cannot read input_path {url}: {reason}") from error
    if extension in VIDEO_EXTENSIONS and len(frames) < num_frames:
        raise MediaError(
            f"sample {spec.name!r}: input video {url} has {len(frames)} frames, but "
            f"{spec.num_conditional_frames} conditional latent frames need its last {num_frames}"
        )
    frames = resize_and_center_crop(frames, height, width)
    black = np.zeros((num_frames - len(frames), height, width, 3), dtype=np.uint8)
    return np.concatenate([frames, black])


def is_video(url: str) -> bool:
    """Whether `url` names a video (by its extension): `read_conditioning` reads its last frames."""
    return posixpath.splitext(_url_path(url))[1].lower() in VIDEO_EXTENSIONS


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


def _url_path(url: str) -> str:
    """The path part of `url`, without an http(s) query string."""
    return urlsplit(url).path if storage.url_scheme(url) in HTTP_SCHEMES else url
