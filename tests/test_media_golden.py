"""Conditioning media read as the official reader reads them: cosmos-ray against tests/golden/media.json.

The fixture holds what the official `easy_io.load` (imageio + PyAV), `read_and_process_video`,
`read_and_process_image` and `resize_input` returned, or the error they raised, for the inputs in
tests/golden/media/ (written by tools/golden/media.py; docs/reference-notes.md, "Input media", says how to
regenerate them and lists each case).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cosmos_ray.conditioning import read_conditioning, resize_and_center_crop
from cosmos_ray.core.media import MediaError, read_image, read_video
from cosmos_ray.core.spec import GenerationSpec
from tests.test_official_golden import GOLDEN, load, unpack
from tools.golden.media import IMAGES, RESIZE_CASES, VIDEOS, resize_input_clip

FIXTURE = load("media")
HEIGHT, WIDTH = FIXTURE["resolution"]
READ = FIXTURE["read"]
# Images the official reader reads as 3 channels: the conditioning frame must be the official one exactly.
COLOR_IMAGES = ("odd.png", "rgb16.png", "exif_rotated.jpg")


def path_of(name: str) -> str:
    return str(GOLDEN / "media" / name)


def official_frames(packed: dict) -> np.ndarray:
    """An official (C, T, H, W) uint8 conditioning tensor as (T, H, W, C)."""
    return unpack(packed).permute(1, 2, 3, 0).numpy()


def conditioning(name: str, num_latent: int) -> np.ndarray:
    """Our conditioning frames for the input, as the engine reads them (uint8 (1 + 4 (n - 1), H, W, 3))."""
    inference_type = "video2world" if name in VIDEOS else "image2world"
    spec = GenerationSpec(
        inference_type=inference_type,
        name="golden",
        prompt="a test",
        input_path=path_of(name),
        num_conditional_frames=num_latent,
    )
    return read_conditioning(spec, 1 + 4 * (num_latent - 1), HEIGHT, WIDTH)


def test_the_fixture_covers_every_input_and_names_the_official_decoder():
    assert sorted(READ) == sorted((*IMAGES, *VIDEOS))
    assert FIXTURE["tools"]["av"].startswith("15.")  # the version the official uv.lock pins (15.0.0)


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_videos_decode_to_the_official_frames(name):
    """Rotation metadata, variable frame rate, 10-bit, 4:4:4 at an odd size, full range, long GOPs: the
    last frames we decode (from the keyframe before them) are the official reader's, bit for bit."""
    case = READ[name]
    official = unpack(case["decoded_last5"]).numpy()
    np.testing.assert_array_equal(read_video(path_of(name), last=5), official)
    whole = read_video(path_of(name))
    assert len(whole) == case["decoded_count"]
    np.testing.assert_array_equal(whole[-5:], official)


@pytest.mark.parametrize("num_latent", [1, 2])
@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_video_conditioning_is_the_official_tensor(name, num_latent):
    expected = READ[name][f"latent{num_latent}"]
    if "error" in expected:  # too few frames: the official reader refuses, and so do we
        assert expected["error"].startswith("ValueError: Video has only")
        with pytest.raises(MediaError, match=r"has \d+ frames, but 2 conditional latent frames need its last 5"):
            conditioning(name, num_latent)
        return
    np.testing.assert_array_equal(conditioning(name, num_latent), official_frames(expected["frames"]))


def test_rotation_metadata_is_not_applied():
    """The official reader returns the stored pixels of a clip with a display matrix (a phone held upright
    comes out lying on its side); so do we."""
    height, width = VIDEOS["rotated.mp4"][:2]
    assert read_video(path_of("rotated.mp4"), last=1).shape == (1, height, width, 3)


def test_variable_frame_rate_counts_each_decoded_frame_once():
    """A 0.4 s gap in the timestamps adds no frames (an ffmpeg command line at a constant rate adds 6)."""
    assert READ["vfr.mp4"]["decoded_count"] == VIDEOS["vfr.mp4"][2]


@pytest.mark.parametrize("name", COLOR_IMAGES)
def test_color_images_are_the_official_frame(name):
    """Including a 16-bit RGB PNG (high bytes) and a JPEG with EXIF orientation 6, which the official reader
    does not rotate."""
    frames = conditioning(name, 1)
    np.testing.assert_array_equal(frames, official_frames(READ[name]["frames"]))
    assert READ[name]["frames"]["shape"][0] == 3


def test_rgba_image_is_the_official_color_channels():
    """The official tensor keeps the alpha channel (which the VAE then refuses); we drop it."""
    official = official_frames(READ["rgba.png"]["frames"])
    assert official.shape[-1] == 4
    np.testing.assert_array_equal(conditioning("rgba.png", 1), official[..., :3])


@pytest.mark.parametrize("name", ["gray.png", "gray_alpha.png"])
def test_grayscale_images_are_the_official_gray_in_each_channel(name):
    """The official reader reads one gray channel (two with alpha), which the VAE then refuses; we make RGB,
    each channel exactly the official gray."""
    official = official_frames(READ[name]["frames"])
    assert official.shape[-1] == {"gray.png": 1, "gray_alpha.png": 2}[name]
    ours = conditioning(name, 1)
    for channel in range(3):
        np.testing.assert_array_equal(ours[..., channel], official[..., 0])


def test_palette_image_official_reads_indices_we_read_colours():
    """The official reader turns a palette PNG into its palette indices (one channel); we read its colours."""
    with Image.open(path_of("palette.png")) as image:
        indices = np.array(image)[None, :, :, None].repeat(3, axis=-1)
    official = official_frames(READ["palette.png"]["frames"])[0]
    assert official.shape[-1] == 1
    np.testing.assert_array_equal(resize_and_center_crop(indices, HEIGHT, WIDTH)[0, ..., 0], official[..., 0])
    assert not np.array_equal(conditioning("palette.png", 1)[0, ..., 0], official[..., 0])


def test_16bit_gray_image_official_overflows_we_take_the_high_byte():
    """The official `to_tensor` keeps a 16-bit gray image as int16 without scaling, so `* 255` then uint8
    wraps around (one channel, which the VAE then refuses); we take the high byte of each sample."""
    official = official_frames(READ["gray16.png"]["frames"])[0]
    assert official.shape[-1] == 1
    with Image.open(path_of("gray16.png")) as image:
        high = (np.asarray(image, dtype=np.int64) >> 8).astype(np.uint8)
    expected = resize_and_center_crop(np.repeat(high[None, :, :, None], 3, axis=-1), HEIGHT, WIDTH)
    ours = read_image(path_of("gray16.png"))
    np.testing.assert_array_equal(resize_and_center_crop(ours, HEIGHT, WIDTH), expected)
    assert not np.array_equal(expected[0, ..., 0], official[..., 0])


@pytest.mark.parametrize("size", RESIZE_CASES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_resize_and_center_crop_matches_official(size):
    clip = resize_input_clip(*size)  # (T, 3, h, w)
    ours = resize_and_center_crop(clip.permute(0, 2, 3, 1).numpy(), HEIGHT, WIDTH)
    official = unpack(FIXTURE["resize_input"][f"{size[0]}x{size[1]}"]).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(ours, official)
