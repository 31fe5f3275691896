"""The multiview model's conditioning inputs: each camera's video read as the official inference reads it.

What the official inference does (`cosmos_predict2/multiview.py`, `_src/predict2_multiview/datasets/local.py` and
`datasets/multiview.py` at 7e5ffc83, the 1.5.0 tree):

- the average frame rate of every given video (decord's `get_avg_fps`) must be one and the same, and a multiple of
  the spec's `fps`; each video is read every `fps_downsample_factor` = rate / fps frames from frame 0: frames
  0, f, ..., 28 f of each view (`ExtractFramesAndCaptions`, its one caption window starting at frame 0), so a
  video needs at least 1 + 28 f frames;
- each frame is stretched to the model's resolution, torchvision's `Resize((720, 1280))` (bilinear, antialiased):
  neither cropped nor kept at its aspect ratio (the base models' reader covers and crops);
- the views are VAE-encoded one by one (folded into the batch) and the first n latent frames of each view hold it.
  The VAE is causal: the first 1 + 4 (n - 1) frames of each view give those latents, so only they are kept.
"""

from __future__ import annotations

import numpy as np

from cosmos_ray.conditioning import resize
from cosmos_ray.core.media import MediaError, MediaLimits, UnreadableMediaError, read_video_start
from cosmos_ray.core.multiview_spec import CAMERAS, FRAMES_PER_VIEW, MultiviewSpec
from cosmos_ray.core.spec import SpecError
from cosmos_ray.core.storage import Storage, StorageError


def read_view_frames(
    spec: MultiviewSpec,
    num_frames: int,
    height: int,
    width: int,
    *,
    storage: Storage = Storage(),
    limits: MediaLimits = MediaLimits(),
) -> np.ndarray:
    """The first `num_frames` frames of every camera at the spec's fps, stretched to (height, width): uint8
    (num_frames, V, H, W, 3), the views in the order of `CAMERAS`.

    SpecError for a camera without a video, videos of different frame rates, a rate that is not a multiple of
    `fps`, or a video shorter than the official reader needs; MediaError for one that cannot be read.
    """
    sample = repr(spec.name)
    clips: dict[str, np.ndarray] = {}
    rates: dict[str, float] = {}
    for camera, url in spec.video_paths.items():
        field = f"{camera}.video_path"
        if url is None:
            raise SpecError(sample, field, f"{spec.inference_type} needs every camera's video; pass one")
        if not storage.may_read(url):
            raise SpecError(
                sample,
                field,
                f"{url} is an http(s) URL, which is off by default (allow it explicitly, or copy the input to a "
                "file system or bucket)",
            )
        clips[camera], rates[camera] = _read_start(url, sample, field, storage, limits, spec.fps)
    rate = _one_rate(rates, sample)
    if rate % spec.fps:
        raise SpecError(
            sample,
            "fps",
            f"the input videos' frame rate {rate:g} is not a multiple of fps {spec.fps} (they are read every "
            "rate / fps frames); pass an fps that divides it",
        )
    step = int(rate / spec.fps)
    needed = 1 + (FRAMES_PER_VIEW - 1) * step
    views = []
    for camera in CAMERAS:
        clip = clips[camera]
        if len(clip) < needed:
            raise SpecError(
                sample,
                f"{camera}.video_path",
                f"the video has {len(clip)} frames; the official reader takes {FRAMES_PER_VIEW} frames every {step} "
                f"(rate {rate:g} / fps {spec.fps}), so it needs at least {needed}",
            )
        views.append(resize(clip[: (num_frames - 1) * step + 1 : step], height, width))
    return np.stack(views, axis=1)  # (num_frames, V, H, W, 3)


def _read_start(
    url: str, sample: str, field: str, storage: Storage, limits: MediaLimits, fps: int
) -> tuple[np.ndarray, float]:
    """The first frames of one camera's video (as many as the official reader takes at its rate) and its rate."""

    def needed(rate: float) -> int:
        return 1 + (FRAMES_PER_VIEW - 1) * max(1, int(rate / fps))

    try:
        return read_video_start(url, needed, storage=storage, limits=limits)
    except MediaError as error:  # the reader's own words (a limit, no video stream): fit for a client
        raise type(error)(f"sample {sample}: cannot read {field} {url}: {error}") from error
    except (OSError, ValueError, RuntimeError) as error:  # a library's words: Serve logs them, tells less
        reason = error.reason if isinstance(error, StorageError) else error
        raise UnreadableMediaError(f"sample {sample}: cannot read {field} {url}: {reason}") from error


def _one_rate(rates: dict[str, float], sample: str) -> float:
    """The videos' common frame rate; SpecError naming the cameras that differ."""
    distinct = sorted(set(rates.values()))
    if len(distinct) != 1:
        listing = ", ".join(f"{camera} {rate:g}" for camera, rate in rates.items())
        raise SpecError(
            sample,
            "video_path",
            f"the cameras' videos have different frame rates ({listing}); the official inference needs one rate",
        )
    return distinct[0]
