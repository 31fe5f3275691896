"""Fixture `media`: the official image and video readers on the inputs users hand in.

`make_media` writes small inputs with the properties real footage and pictures have (rotation metadata,
variable frame rate, 10-bit, 4:4:4 at an odd size, full range, too few frames, long GOPs; EXIF orientation,
16-bit, palette, grayscale and alpha images) to OUT/media/, with the ffmpeg binary imageio-ffmpeg bundles and
Pillow. `media` runs the official `easy_io.load` (imageio v3 + PyAV, the video reader of
`read_and_process_video`), `read_and_process_video`, `read_and_process_image` and `resize_input` on them and
records what they return, or the error they raise.
"""

from __future__ import annotations

import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tools.golden.harness import Official, pack, write

RESOLUTION = [32, 48]  # (H, W) the conditioning is resized and cropped to
NUM_VIDEO_FRAMES = 9  # the clip length read_and_process_video pads to (the model's is 93; 9 keeps it small)

# name: (height, width, frame count, ffmpeg output options, display rotation in degrees written by a remux)
X264 = ["-c:v", "libx264", "-crf", "18"]
BT709_TAGS = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
VIDEOS: dict[str, tuple[int, int, int, list[str], int]] = {
    # H.264 converted with the BT.709 matrix and tagged BT.709, as camera and screen recordings are
    "bt709.mp4": (34, 50, 9, ["-vf", "scale=out_color_matrix=bt709:out_range=tv", *X264, "-pix_fmt", "yuv420p",
                              *BT709_TAGS], 0),
    # a phone held upright: stored 50 wide, 34 high, with a display matrix rotating it 90 degrees
    "rotated.mp4": (34, 50, 9, [*X264, "-pix_fmt", "yuv420p"], 90),
    # variable frame rate: frames 0-3 at 16 fps, then a 0.4 s gap, frames 4-8 at 16 fps again
    "vfr.mp4": (34, 50, 9, ["-vf", r"setpts=(N+gte(N\,4)*6)/(16*TB)", "-fps_mode", "vfr", *X264, "-pix_fmt",
                            "yuv420p"], 0),
    "10bit.mp4": (34, 50, 9, [*X264, "-pix_fmt", "yuv420p10le"], 0),
    "yuv444_odd.mp4": (35, 51, 9, [*X264, "-pix_fmt", "yuv444p"], 0),
    "full_range.mp4": (34, 50, 9, ["-vf", "scale=out_range=full", *X264, "-pix_fmt", "yuv420p", "-color_range",
                                   "pc"], 0),
    "short.mp4": (34, 50, 3, [*X264, "-pix_fmt", "yuv420p"], 0),  # fewer frames than 2 latent frames need
    # long clips whose last frames lie behind keyframes: closed GOPs of 6 with B-frames, and open GOPs
    "long_gop.mp4": (34, 50, 40, [*X264, "-pix_fmt", "yuv420p", "-g", "6", "-bf", "2"], 0),
    "open_gop.mp4": (34, 50, 40, [*X264, "-pix_fmt", "yuv420p", "-x264-params",
                                  "keyint=8:min-keyint=8:open-gop=1:bframes=3"], 0),
}  # fmt: skip
IMAGES = (
    "odd.png", "rgba.png", "gray.png", "palette.png", "gray_alpha.png", "gray16.png", "rgb16.png",
    "exif_rotated.jpg",
)  # fmt: skip


def pattern(height: int, width: int) -> np.ndarray:
    """A uint8 (H, W, 3) picture with gradients, a saturated block and no symmetry (rotations show)."""
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([(xx * 4.8) % 256, (yy * 6.9) % 256, ((xx + yy) * 2.6) % 256], -1).astype(np.uint8)
    rgb[10:20, 15:30] = (250, 120, 10)
    return rgb


def make_media(folder: Path) -> dict[str, Path]:
    """Write every input of the fixture to `folder`; the same bytes on every run with the same tools."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in (*IMAGES, *VIDEOS)}
    rgb = pattern(37, 53)
    alpha = np.random.RandomState(0).randint(0, 256, rgb.shape[:2]).astype(np.uint8)
    Image.fromarray(rgb).save(paths["odd.png"])
    Image.fromarray(np.dstack([rgb[:33, :47], alpha[:33, :47]])).save(paths["rgba.png"])
    Image.fromarray(rgb[:29, :41]).convert("L").save(paths["gray.png"])
    Image.fromarray(rgb[:31, :45]).quantize(colors=16).save(paths["palette.png"])
    gray = Image.fromarray(rgb[:30, :44]).convert("L")
    Image.merge("LA", (gray, Image.fromarray(alpha[:30, :44]))).save(paths["gray_alpha.png"])
    deep = rgb[:35, :49].astype(np.uint16) * 257 + np.arange(35 * 49 * 3, dtype=np.uint16).reshape(35, 49, 3) % 251
    Image.fromarray(deep[..., 1]).save(paths["gray16.png"])  # mode I;16: a 16-bit grayscale PNG
    encode_16bit_png(paths["rgb16.png"], deep)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; viewers rotate the picture 90 degrees clockwise
    Image.fromarray(rgb[:33, :51]).save(paths["exif_rotated.jpg"], quality=95, exif=exif)
    for name, (height, width, count, options, rotation) in VIDEOS.items():
        frames = [np.roll(pattern(height, width), shift * 3, axis=1) for shift in range(count)]
        encode_video(paths[name], frames, options, rotation)
    return paths


def encode_video(path: Path, frames: list[np.ndarray], options: list[str], rotation: int) -> None:
    """rgb24 frames at 16 fps through the bundled ffmpeg with the output `options`; a `rotation` is then
    written as the stream's display matrix by a remux (the pixels stay as stored, as a phone writes them)."""
    import imageio_ffmpeg

    ffmpeg = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error"]
    height, width = frames[0].shape[:2]
    encoded = path.with_suffix(".encoded.mp4") if rotation else path
    command = [
        *ffmpeg, "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", "16", "-i", "-",
        *options, "-threads", "1", "-bitexact", str(encoded),
    ]  # fmt: skip
    subprocess.run(command, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)
    if rotation:
        remux = [*ffmpeg, "-display_rotation", str(rotation), "-i", str(encoded), "-c", "copy", "-bitexact", str(path)]
        subprocess.run(remux, check=True)
        encoded.unlink()


def encode_16bit_png(path: Path, frame: np.ndarray) -> None:
    """A 48-bit RGB PNG (Pillow cannot write one)."""
    import imageio_ffmpeg

    height, width = frame.shape[:2]
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb48le",
        "-s", f"{width}x{height}", "-i", "-", "-frames:v", "1", "-pix_fmt", "rgb48be", "-bitexact", str(path),
    ]  # fmt: skip
    subprocess.run(command, input=frame.astype("<u2").tobytes(), check=True)


RESIZE_CASES = ((37, 53), (100, 30), (8, 9), (32, 48), (33, 47))


def resize_input_clip(height: int, width: int) -> torch.Tensor:
    """A uint8 (2, 3, H, W) clip with edges and gradients, for resize_input."""
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.stack(
        [(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)), ((xx // 3 + yy // 2) % 2) * 255]
    )
    return torch.from_numpy(np.stack([frame, 255 - frame]).astype(np.uint8))


def outcome(function, *args, **kwargs) -> tuple[Any, str | None]:
    """(the result, None), or (None, "ExceptionType: message") when the official function raises."""
    try:
        return function(*args, **kwargs), None
    except Exception as error:  # noqa: BLE001 - every failure of the official code is a recorded outcome
        return None, f"{type(error).__name__}: {error}"


def read_video_case(inference, easy_io, path: Path) -> dict:
    """What the official reader decodes from `path` and the conditioning frames it makes for 1 and 2 latent
    frames ((C, 1 + 4 (n - 1), H, W) uint8), or the errors."""
    case: dict = {}
    loaded, error = outcome(easy_io.load, str(path))
    if error is None:
        decoded = loaded[0]  # (T, H, W, 3) uint8: every frame, as imageio + PyAV give them
        case["decoded_count"] = len(decoded)
        case["decoded_last5"] = pack(decoded[-5:])
    else:
        case["load_error"] = error
    for latent in (1, 2):
        video, error = outcome(inference.read_and_process_video, str(path), RESOLUTION, NUM_VIDEO_FRAMES, latent)
        count = 1 + 4 * (latent - 1)
        case[f"latent{latent}"] = {"frames": pack(video[0, :, :count])} if error is None else {"error": error}
    return case


def read_image_case(inference, path: Path) -> dict:
    """The official image frame (C, 1, H, W) after resize and crop, its channel count, or the error."""
    video, error = outcome(inference.read_and_process_image, str(path), RESOLUTION, 5, resize=True)
    if error is not None:
        return {"error": error}
    return {"frames": pack(video[0, :, :1]), "dtype": str(video.dtype)}  # the rest are zeros


def media(official: Official, out: Path) -> None:
    import av
    import imageio_ffmpeg

    inference = official.module("predict2.inference.video2world")
    easy_io = official.module("imaginaire.utils.easy_io.easy_io")
    official.module("imaginaire.utils.easy_io.handlers.imageio_video_handler")  # the reader easy_io.load runs
    paths = make_media(out / "media")
    read = {name: read_image_case(inference, paths[name]) for name in IMAGES}
    read.update({name: read_video_case(inference, easy_io, paths[name]) for name in VIDEOS})
    resized = {}
    for size in RESIZE_CASES:
        resized[f"{size[0]}x{size[1]}"] = pack(inference.resize_input(resize_input_clip(*size), RESOLUTION))
    tools = {
        "av": version("av"),
        "av_ffmpeg": av.ffmpeg_version_info,
        "imageio": version("imageio"),
        "pillow": version("pillow"),
        "imageio_ffmpeg": version("imageio-ffmpeg"),  # its ffmpeg wrote the videos and the 16-bit PNG
        "ffmpeg": imageio_ffmpeg.get_ffmpeg_version(),
    }
    content = {
        "resolution": RESOLUTION,
        "num_video_frames": NUM_VIDEO_FRAMES,
        "tools": tools,
        "read": read,
        "resize_input": resized,
    }
    write(out, "media", official, content)
