"""The committed example media are what the examples need, and make_media.py can rebuild them."""

import os
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
from PIL import Image

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def video_frames(path: str) -> tuple[dict, list[np.ndarray]]:
    reader = imageio_ffmpeg.read_frames(path)
    info = next(reader)
    width, height = info["size"]
    return info, [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]


def check_media(folder: str) -> None:
    png = os.path.join(folder, "square.png")
    mp4 = os.path.join(folder, "square.mp4")
    assert Image.open(png).size == (96, 64)
    info, frames = video_frames(mp4)
    assert info["size"] == (96, 64) and info["fps"] == 16 and len(frames) >= 9
    assert not np.array_equal(frames[0], frames[-1])  # the square moves
    for path in (png, mp4):
        assert os.path.getsize(path) < 16 * 1024


def test_committed_media():
    check_media(os.path.join(EXAMPLES, "media"))


def test_make_media_rebuilds_them(tmp_path):
    subprocess.run([sys.executable, os.path.join(EXAMPLES, "make_media.py"), "--out", str(tmp_path)], check=True)
    check_media(str(tmp_path))
    committed = np.asarray(Image.open(os.path.join(EXAMPLES, "media", "square.png")))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "square.png")), committed)
