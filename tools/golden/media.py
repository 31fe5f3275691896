"""Fixture `media`: the official read_and_process_image / read_and_process_video / resize_input on media written
to OUT/media/."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import torch

from tools.golden.harness import Official, pack, write


def make_media(folder: Path) -> dict[str, Path]:
    """Small inputs with the awkward properties real inputs have; written once, kept with the fixtures."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:37, 0:53]
    rgb = np.stack([(xx * 4.8) % 256, (yy * 6.9) % 256, ((xx + yy) * 2.6) % 256], -1).astype(np.uint8)
    rgb[10:20, 15:30] = (250, 120, 10)
    paths = {name: folder / name for name in ("odd.png", "rgba.png", "gray.png", "palette.png", "bt709.mp4")}
    Image.fromarray(rgb).save(paths["odd.png"])
    alpha = rng.randint(0, 256, rgb.shape[:2]).astype(np.uint8)
    Image.fromarray(np.dstack([rgb[:33, :47], alpha[:33, :47]])).save(paths["rgba.png"])
    Image.fromarray(rgb[:29, :41]).convert("L").save(paths["gray.png"])
    Image.fromarray(rgb[:31, :45]).quantize(colors=16).save(paths["palette.png"])
    frames = [np.roll(rgb[:34, :50], shift * 3, axis=1) for shift in range(9)]
    write_bt709_video(paths["bt709.mp4"], frames)
    return paths


def write_bt709_video(path: Path, frames: list[np.ndarray]) -> None:
    """H.264 yuv420p converted with the BT.709 matrix and tagged BT.709 (as camera and screen recordings are)."""
    import imageio_ffmpeg

    height, width = frames[0].shape[:2]
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-s", f"{width}x{height}", "-r", "16", "-i", "-",
        "-vf", "scale=out_color_matrix=bt709:out_range=tv", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        "-crf", "18", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
        "-bitexact", str(path),
    ]  # fmt: skip
    subprocess.run(command, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)


RESIZE_CASES = ((37, 53), (100, 30), (8, 9), (32, 48), (33, 47))


def resize_input_clip(height: int, width: int) -> torch.Tensor:
    """A uint8 (2, 3, H, W) clip with edges and gradients, for resize_input."""
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.stack(
        [(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)), ((xx // 3 + yy // 2) % 2) * 255]
    )
    return torch.from_numpy(np.stack([frame, 255 - frame]).astype(np.uint8))


def media(official: Official, out: Path) -> None:
    inference = official.module("predict2.inference.video2world")
    easy_io = official.module("imaginaire.utils.easy_io.easy_io")
    paths = make_media(out / "media")
    resolution = [32, 48]
    cases = {}
    for name in ("odd.png", "rgba.png", "gray.png", "palette.png"):
        frames = inference.read_and_process_image(str(paths[name]), resolution, 5, resize=True)
        cases[name] = {"frames": pack(frames[0, :, :1])}  # (C, 1, H, W): the image frame; the rest are zeros
    decoded, _ = easy_io.load(str(paths["bt709.mp4"]))  # the official video reader (imageio + PyAV)
    processed = inference.read_and_process_video(str(paths["bt709.mp4"]), resolution, 9, 2, resize=True)
    cases["bt709.mp4"] = {"decoded_last5": pack(decoded[-5:]), "frames": pack(processed[0, :, :5])}
    resized = {}
    for size in RESIZE_CASES:
        resized[f"{size[0]}x{size[1]}"] = pack(inference.resize_input(resize_input_clip(*size), resolution))
    content = {"resolution": resolution, "read": cases, "resize_input": resized}
    write(out, "media", official, content)
