"""Media files: images and videos read from any URL, generated frames written as mp4. No torch.

Inputs are read from any fsspec URL (local paths, `file://`, `s3://`, `gs://`, ...); `http(s)://` only when
the caller's `Storage` allows it. Frames are uint8 (T, H, W, 3) RGB throughout. The model-side preparation of
conditioning frames (the reference's resize and crop) is `cosmos_ray.conditioning`; this module stays free of
torch so that the Ray driver side (the writer stage, the Serve ingress) can use it.

Reading follows the official reader (docs/reference-notes.md, "Input media"): videos are decoded by PyAV and
converted to rgb24 by its `to_ndarray`, as imageio's `pyav` plugin does under `easy_io.load`; the stored
pixels are used as they are (a rotation in the metadata is not applied, every decoded frame of a
variable-frame-rate clip counts once); images are read by Pillow without applying EXIF orientation. Every
input is checked against `MediaLimits` before its pixels are decoded, and of a video only the frames from the
keyframe before the ones kept are decoded.
"""

from __future__ import annotations

import io
import os
import posixpath
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from cosmos_ray.core.storage import HTTP_SCHEMES, Storage, is_local, one_line_errors, url_scheme

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_EXTENSIONS = (".mp4",)
INPUT_EXTENSIONS = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS  # what `input_path` may name

_16BIT_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I")  # Pillow's modes of a 16-bit grayscale image


class MediaError(ValueError):
    """A conditioning input that cannot be used, or frames that cannot be written; names the sample."""


class UnreadableMediaError(MediaError):
    """An input that could not be read or decoded; its message quotes the library (a decoder's output, paths of
    the server), so Serve tells its client only that the input is unreadable and logs the rest."""


@dataclass(frozen=True)
class MediaLimits:
    """The largest input the engine decodes, checked from the file's size and headers before any pixel is.

    Conditioning needs at most 5 frames, but a file's cost is set by its header: a 0.4 MB PNG can declare
    12000 x 12000 pixels (430 MB once decoded), a video hours of frames. Every entry point reads inputs
    through `read_image` / `read_video` with these limits (the engine's `EngineOptions.media_limits`).
    """

    max_bytes: int = field(default=1 << 30, metadata={"help": "largest input file in bytes"})
    # 8K UHD (7680 x 4320): an image or a video frame of more pixels is refused before decoding
    max_pixels: int = field(default=7680 * 4320, metadata={"help": "largest width x height of an input"})
    max_frames: int = field(default=216_000, metadata={"help": "most frames an input video may hold"})  # 1 h at 60
    max_duration_s: float = field(default=3600.0, metadata={"help": "longest input video in seconds"})

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_frames", "max_duration_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MediaLimits.{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> MediaLimits:
        """Limits from {name: value} (a Serve argument; values may be strings), the others at their default."""
        whole = {limit.name: limit.type == "int" for limit in fields(cls)}  # else a float
        unknown = sorted(set(values) - set(whole))
        if unknown:
            raise ValueError(f"unknown media limit {', '.join(unknown)}; the limits are {', '.join(whole)}")
        try:
            numbers = {name: float(str(value)) for name, value in values.items()}
            return cls(**{name: int(number) if whole[name] else number for name, number in numbers.items()})  # type: ignore[arg-type]
        except (TypeError, ValueError) as error:
            raise ValueError(f"media limits must be positive numbers: {error}") from None

    @classmethod
    def from_pairs(cls, pairs: Iterable[str]) -> MediaLimits:
        """Limits from NAME=VALUE words (the `--media-limit` flag)."""
        values = {}
        for pair in pairs:
            name, equals, value = pair.partition("=")
            if not equals:
                raise ValueError(f"--media-limit takes NAME=VALUE, got {pair!r}")
            values[name.strip()] = value.strip()
        return cls.from_mapping(values)

    def check_bytes(self, size: int) -> None:
        if size > self.max_bytes:
            raise MediaError(f"the file has {size} bytes, more than the {self.max_bytes} allowed here")

    def check_pixels(self, width: int, height: int) -> None:
        if width * height > self.max_pixels:
            raise MediaError(
                f"it is {width}x{height} pixels ({width * height}), more than the {self.max_pixels} allowed "
                "here; scale it down first"
            )

    def check_video(self, num_frames: int, duration_s: float | None) -> None:
        if num_frames > self.max_frames:
            raise MediaError(f"the video has {num_frames} frames, more than the {self.max_frames} allowed here")
        if duration_s is not None and duration_s > self.max_duration_s:
            raise MediaError(
                f"the video lasts {duration_s:.1f} s, longer than the {self.max_duration_s:g} s allowed here; "
                "cut the part you condition on"
            )


def read_image(url: str, *, storage: Storage = Storage(), limits: MediaLimits = MediaLimits()) -> np.ndarray:
    """The image at `url` as uint8 (1, H, W, 3) RGB, its stored pixels as the official reader reads them.

    EXIF orientation is not applied (the official reader does not). Where the official reader gives other
    than 3 channels (which its VAE then refuses), the image is made RGB: alpha dropped, grayscale and palette
    expanded, 16-bit grayscale reduced to its high byte (as Pillow reduces 16-bit RGB).
    """
    data = read_input_bytes(url, storage, limits)
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: `limits` decides, from the header
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
        with image:
            limits.check_pixels(image.width, image.height)
            if image.mode in _16BIT_GRAY_MODES:
                gray = (np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
                return np.repeat(gray[None, :, :, None], 3, axis=-1)
            return np.array(image.convert("RGB"))[None]
    except Image.DecompressionBombError as error:  # a header past Pillow's own limit
        raise MediaError(f"refused before decoding: {error}") from None


def read_video(
    url: str, *, last: int | None = None, storage: Storage = Storage(), limits: MediaLimits = MediaLimits()
) -> np.ndarray:
    """The frames of the video at `url` as uint8 (T, H, W, 3) RGB, decoded as the official reader does.

    With `last`, only the last `last` frames (fewer if the video is shorter) are returned, and decoding starts
    at the keyframe before them.
    """
    from cosmos_ray.core.video_decode import decode_video  # PyAV: only where a video is read

    if is_local(url):
        path = url.removeprefix("file://")
        with one_line_errors("read", url):
            size = os.path.getsize(path)
        limits.check_bytes(size)
        return decode_video(path, last, limits)
    return decode_video(io.BytesIO(read_input_bytes(url, storage, limits)), last, limits)


def read_video_start(
    url: str,
    count: Callable[[float], int],
    *,
    storage: Storage = Storage(),
    limits: MediaLimits = MediaLimits(),
) -> tuple[np.ndarray, float]:
    """The first `count(rate)` frames of the video at `url` (fewer if it is shorter) as uint8 (T, H, W, 3) RGB,
    and its average frame rate `rate`; checked against `limits` as `read_video`."""
    from cosmos_ray.core.video_decode import decode_video_start  # PyAV: only where a video is read

    if is_local(url):
        path = url.removeprefix("file://")
        with one_line_errors("read", url):
            size = os.path.getsize(path)
        limits.check_bytes(size)
        return decode_video_start(path, count, limits)
    return decode_video_start(io.BytesIO(read_input_bytes(url, storage, limits)), count, limits)


def read_input_bytes(url: str, storage: Storage, limits: MediaLimits) -> bytes:
    """The content of `url`, its size checked before it is read (where the store knows it) and after. An
    http(s) URL is only fetched through `Storage.read_bytes` (its address checks), which stops at the limit."""
    if url_scheme(url) in HTTP_SCHEMES:
        return storage.read_bytes(url, max_bytes=limits.max_bytes)
    with one_line_errors("read", url):
        fs, path = storage.filesystem(url)
        size = fs.size(path)
    if size is not None:
        limits.check_bytes(size)
    data = storage.read_bytes(url)
    limits.check_bytes(len(data))
    return data


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
    import imageio_ffmpeg  # here: its ffmpeg binary is needed by the writers alone, not by what reads specs

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
