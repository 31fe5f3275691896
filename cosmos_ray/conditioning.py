"""Conditioning frames for image2world and video2world, prepared as the official inference script does.

Follows the official `video2world.py`: the input is resized (aspect ratio kept, bilinear with antialiasing,
sizes rounded up) to cover the target and center-cropped to it; an image becomes the first frame of a clip
whose other frames are black; a video contributes its *last* 1 + 4 (n - 1) frames for n latent conditional
frames. Frames are uint8 (T, H, W, 3) RGB; reading the files is `cosmos_ray.core.media`. The multiview model's
reader stretches its inputs to the target instead (`resize`, `cosmos_ray.multiview_inputs`).
"""

from __future__ import annotations

import math
import posixpath

import numpy as np
import torch
import torch.nn.functional as F

from cosmos_ray.core.media import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    MediaError,
    MediaLimits,
    UnreadableMediaError,
    read_image,
    read_video,
    url_path,
)
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.storage import Storage, StorageError


def resize_and_center_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale uint8 (T, h, w, 3) frames to cover (height, width), then crop the center; as the reference.

    The scale is the larger of the two ratios and the scaled size is rounded up; the resize is bilinear
    with antialiasing on float values, rounded back to uint8; the crop offset is rounded half to even.
    """
    in_height, in_width = frames.shape[1:3]
    scale = max(width / in_width, height / in_height)
    size = (math.ceil(scale * in_height), math.ceil(scale * in_width))
    video = _scaled(frames, size)  # (T, 3, size)
    top = int(round((size[0] - height) / 2.0))
    left = int(round((size[1] - width) / 2.0))
    video = video[:, :, top : top + height, left : left + width].round().to(torch.uint8)
    return video.permute(0, 2, 3, 1).numpy()  # (T, height, width, 3)


def resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale uint8 (T, h, w, 3) frames to exactly (height, width), the aspect ratio not kept: torchvision's
    `Resize((height, width))` on uint8 tensors (bilinear with antialiasing on float values, rounded back)."""
    video = _scaled(frames, (height, width)).round().to(torch.uint8)
    return video.permute(0, 2, 3, 1).numpy()  # (T, height, width, 3)


def _scaled(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (T, h, w, 3) -> float (T, 3, *size): bilinear with antialiasing (none when the size is kept)."""
    video = torch.tensor(frames).permute(0, 3, 1, 2).float()  # (T, 3, h, w)
    if size != tuple(video.shape[2:]):
        video = F.interpolate(video, size=size, mode="bilinear", align_corners=False, antialias=True)
    return video


def read_conditioning(
    spec: GenerationSpec,
    num_frames: int,
    height: int,
    width: int,
    *,
    storage: Storage = Storage(),
    limits: MediaLimits = MediaLimits(),
) -> np.ndarray:
    """The first `num_frames` pixel frames of the spec's conditioning clip, uint8 (num_frames, H, W, 3).

    An image gives itself followed by black frames; a video gives its last `num_frames` frames. An input
    over `limits` is refused from its size and headers, before its pixels are decoded.
    """
    url = spec.input_path
    if url is None:
        raise MediaError(f"sample {spec.name!r}: {spec.inference_type} needs an input_path")
    if not storage.may_read(url):
        raise MediaError(
            f"sample {spec.name!r}: input_path {url} is an http(s) URL, which is off by default "
            "(allow it explicitly, or copy the input to a file system or bucket)"
        )
    extension = posixpath.splitext(url_path(url))[1].lower()
    try:
        if extension in IMAGE_EXTENSIONS:
            frames = read_image(url, storage=storage, limits=limits)
        elif extension in VIDEO_EXTENSIONS:
            frames = read_video(url, last=num_frames, storage=storage, limits=limits)
        else:
            raise ValueError(
                f"extension {extension!r} is neither an image ({', '.join(IMAGE_EXTENSIONS)}) "
                f"nor a video ({', '.join(VIDEO_EXTENSIONS)})"
            )
    except MediaError as error:  # the reader's own words (a limit, no video stream): fit for a client
        raise type(error)(f"sample {spec.name!r}: cannot read input_path {url}: {error}") from error
    except (OSError, ValueError, RuntimeError) as error:  # a library's words: Serve logs them, tells less
        reason = error.reason if isinstance(error, StorageError) else error  # it names the URL already
        raise UnreadableMediaError(f"sample {spec.name!r}: cannot read input_path {url}: {reason}") from error
    if extension in VIDEO_EXTENSIONS and len(frames) < num_frames:
        raise MediaError(
            f"sample {spec.name!r}: input video {url} has {len(frames)} frames, but "
            f"{spec.num_conditional_frames} conditional latent frames need its last {num_frames}"
        )
    frames = resize_and_center_crop(frames, height, width)
    black = np.zeros((num_frames - len(frames), height, width, 3), dtype=np.uint8)
    return np.concatenate([frames, black])


def normalize_pixels(video: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 pixels -> [-1, 1] as the reference computes it: cast to the model dtype first, then `/ 127.5 - 1`
    in that dtype (in bf16 this rounds twice, and 128 of the 256 levels land elsewhere than a float32
    computation cast to bf16 would put them)."""
    return video.to(dtype) / 127.5 - 1.0
