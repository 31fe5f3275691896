"""Write the tiny conditioning media of the examples: a still and a short clip of a moving square.

    python examples/make_media.py          # writes examples/media/square.png and square.mp4

64x96 (H, W) is the tiny model's trained resolution; the clip has 17 frames at 16 fps, enough for two
latent conditional frames (1 + 4 pixel frames).
"""

from __future__ import annotations

import argparse
import os

import imageio_ffmpeg
import numpy as np
from PIL import Image

HEIGHT, WIDTH = 64, 96
NUM_FRAMES = 17
FPS = 16
SQUARE = 20


def frame(index: int) -> np.ndarray:
    """An orange square sliding right over a blue-to-green gradient; uint8 (H, W, 3)."""
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[..., 1] = np.linspace(40, 160, WIDTH, dtype=np.uint8)[None, :]
    image[..., 2] = np.linspace(200, 80, HEIGHT, dtype=np.uint8)[:, None]
    left = 8 + index * (WIDTH - SQUARE - 16) // (NUM_FRAMES - 1)
    top = (HEIGHT - SQUARE) // 2
    image[top : top + SQUARE, left : left + SQUARE] = (240, 140, 30)
    return image


def write_mp4(path: str, frames: list[np.ndarray]) -> None:
    writer = imageio_ffmpeg.write_frames(
        path,
        (WIDTH, HEIGHT),
        fps=FPS,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        macro_block_size=16,
        output_params=["-crf", "28", "-bitexact"],
    )
    writer.send(None)  # start the generator
    for image in frames:
        writer.send(np.ascontiguousarray(image))
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "media"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    frames = [frame(i) for i in range(NUM_FRAMES)]
    Image.fromarray(frames[0]).save(os.path.join(args.out, "square.png"), optimize=True)
    write_mp4(os.path.join(args.out, "square.mp4"), frames)


if __name__ == "__main__":
    main()
