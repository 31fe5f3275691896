"""Conditioning media reading (local, file://, memory://, S3) and mp4 writing."""

from pathlib import Path

import fsspec
import imageio_ffmpeg
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cosmos_ray.conditioning import read_conditioning, resize_and_center_crop
from cosmos_ray.core import video_decode
from cosmos_ray.core.media import MediaError, MediaLimits, read_image, read_video, write_mp4
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.storage import Storage
from tests.media_helpers import png_header

HEIGHT, WIDTH = 32, 48
GOLDEN_MEDIA = Path(__file__).resolve().parent / "golden" / "media"


def gradient_frames(num_frames: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Smooth frames that survive H.264 well; frame t is brighter by 8 t."""
    rows = np.linspace(0, 120, height)[:, None]
    cols = np.linspace(0, 100, width)[None, :]
    frames = []
    for t in range(num_frames):
        channels = [rows + cols, np.full((height, width), 60.0 + 8 * t), 200 - rows + 0 * cols]
        frames.append(np.stack(channels, axis=-1))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def mp4_stream(path: str) -> tuple[str, str, float, int]:
    """(codec, pixel format, fps, frame count) as ffmpeg reads them."""
    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    count = sum(1 for _ in reader)
    return meta["codec"], meta["pix_fmt"].split("(")[0], meta["fps"], count


def spec_for(input_path: str, inference_type: str = "video2world", **fields) -> GenerationSpec:
    return GenerationSpec(
        inference_type=inference_type, name="sample-7", prompt="a test", input_path=input_path, **fields
    )


def test_write_mp4_round_trip(tmp_path):
    frames = gradient_frames(9)
    data = write_mp4(frames, fps=24, quality=8)
    assert data[4:8] == b"ftyp"
    path = tmp_path / "out.mp4"
    path.write_bytes(data)
    assert mp4_stream(str(path)) == ("h264", "yuv420p", 24.0, 9)
    decoded = read_video(str(path))
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(float) - frames).mean() < 3.0


def test_write_mp4_rejects_bad_frames():
    with pytest.raises(MediaError, match="even height and width"):
        write_mp4(np.zeros((2, 31, 48, 3), np.uint8), fps=16)
    with pytest.raises(MediaError, match=r"must be uint8 \(T, H, W, 3\)"):
        write_mp4(np.zeros((2, 32, 48, 3), np.float32), fps=16)


def test_read_image_and_video_from_local_file_url_and_memory(tmp_path):
    image = gradient_frames(1)[0]
    png = tmp_path / "still.png"
    Image.fromarray(image).save(png)
    rgba = tmp_path / "still_alpha.png"
    Image.fromarray(np.dstack([image, np.full(image.shape[:2], 7, np.uint8)])).save(rgba)
    video = tmp_path / "clip.mp4"
    video.write_bytes(write_mp4(gradient_frames(5), fps=16))
    with fsspec.open("memory://media/clip.mp4", "wb") as f:
        f.write(video.read_bytes())

    np.testing.assert_array_equal(read_image(str(png)), image[None])
    np.testing.assert_array_equal(read_image(f"file://{png}"), image[None])
    np.testing.assert_array_equal(read_image(str(rgba)), image[None])  # alpha dropped
    local = read_video(str(video))
    assert local.shape == (5, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(read_video("memory://media/clip.mp4"), local)


def test_read_conditioning_from_s3(tmp_path, s3_bucket):
    bucket, options = s3_bucket
    url = f"{bucket}/inputs/clip.mp4"
    with fsspec.open(url, "wb", **options) as f:
        f.write(write_mp4(gradient_frames(6), fps=16))
    frames = read_conditioning(spec_for(url), 5, HEIGHT, WIDTH, storage=Storage(options))
    assert frames.shape == (5, HEIGHT, WIDTH, 3)


def test_video_conditioning_takes_the_last_frames(tmp_path):
    clip = gradient_frames(8)
    path = tmp_path / "clip.mp4"
    path.write_bytes(write_mp4(clip, fps=16, quality=10))
    decoded = read_video(str(path))
    frames = read_conditioning(spec_for(str(path)), 5, HEIGHT, WIDTH)
    np.testing.assert_array_equal(frames, decoded[3:])
    np.testing.assert_array_equal(read_video(str(path), last=5), decoded[3:])
    one = read_conditioning(spec_for(str(path), num_conditional_frames=1), 1, HEIGHT, WIDTH)
    np.testing.assert_array_equal(one, decoded[-1:])


def test_image_conditioning_is_followed_by_black_frames(tmp_path):
    image = gradient_frames(1, 64, 96)[0]
    path = tmp_path / "still.jpg"
    Image.fromarray(image).save(path, quality=95)
    frames = read_conditioning(spec_for(str(path), "image2world"), 5, HEIGHT, WIDTH)
    assert frames.shape == (5, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(frames[0], resize_and_center_crop(read_image(str(path)), HEIGHT, WIDTH)[0])
    assert not frames[1:].any()


def test_too_short_video_names_the_sample(tmp_path):
    path = tmp_path / "short.mp4"
    path.write_bytes(write_mp4(gradient_frames(3), fps=16))
    with pytest.raises(
        MediaError,
        match=r"sample 'sample-7': input video .*short.mp4 has 3 frames, but 2 "
        r"conditional latent frames need its last 5",
    ):
        read_conditioning(spec_for(str(path)), 5, HEIGHT, WIDTH)


@pytest.mark.parametrize(
    "name, content", [("broken.mp4", b"not a video"), ("broken.png", b"\x89PNG nope"), ("missing.mp4", None)]
)
def test_unreadable_input_names_the_sample(tmp_path, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=rf"sample 'sample-7': cannot read input_path .*{name}"):
        read_conditioning(spec_for(str(path)), 5, HEIGHT, WIDTH)


def test_a_missing_input_says_not_found(tmp_path, s3_bucket):
    root, options = s3_bucket
    for url in (str(tmp_path / "missing.png"), f"{root}/media/missing.png"):
        with pytest.raises(MediaError) as caught:
            read_conditioning(spec_for(url), 5, HEIGHT, WIDTH, storage=Storage(options))
        assert str(caught.value) == f"sample 'sample-7': cannot read input_path {url}: not found"


def test_http_inputs_are_off_by_default():
    with pytest.raises(MediaError, match="http\\(s\\) URL, which is off by default"):
        read_conditioning(spec_for("https://example.com/clip.mp4?x=1"), 5, HEIGHT, WIDTH)


def test_resize_covers_then_crops_the_center():
    # Column index as the pixel value: a wide input keeps its middle columns.
    columns = np.broadcast_to(np.arange(192, dtype=np.uint8)[None, None, :, None], (1, 64, 192, 3))
    out = resize_and_center_crop(columns, 64, 96)
    assert out.shape == (1, 64, 96, 3)
    np.testing.assert_array_equal(out[0, 0, :, 0], np.arange(48, 144))
    # An odd surplus of one column: offset round(0.5) == 0, as Python rounds half to even.
    np.testing.assert_array_equal(resize_and_center_crop(columns[:, :, :97], 64, 96)[0, 0, :, 0], np.arange(96))
    # Same size is untouched; halving a constant image keeps it constant.
    frames = gradient_frames(2)
    np.testing.assert_array_equal(resize_and_center_crop(frames, HEIGHT, WIDTH), frames)
    assert (resize_and_center_crop(np.full((1, 64, 96, 3), 77, np.uint8), 32, 48) == 77).all()


def test_resize_rounds_the_scaled_size_up():
    # 96 / 187 * 187 is 96.00000000000001 in floating point: the reference resizes 138 x 187 to 71 x 97 (both
    # rounded up) and crops rows 4..67 (round(3.5) == 4) and columns 0..95 (round(0.5) == 0).
    frames = np.random.default_rng(0).integers(0, 256, (1, 138, 187, 3), dtype=np.uint8)
    resized = F.interpolate(
        torch.from_numpy(frames).permute(0, 3, 1, 2).float(),
        size=(71, 97),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    expected = resized[:, :, 4:68, :96].round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(resize_and_center_crop(frames, 64, 96), expected)


# --- limits checked before decoding -------------------------------------------------------------------------


def test_a_huge_png_header_is_refused_before_its_pixels_are_decoded(tmp_path, monkeypatch):
    """45 bytes declaring 12000 x 12000 pixels (430 MB decoded): refused from the header, nothing decoded."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(12000, 12000))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels decoded"))
    with pytest.raises(
        MediaError,
        match=r"sample 'sample-7': cannot read input_path .*bomb.png: it is "
        r"12000x12000 pixels \(144000000\), more than the 33177600 allowed here",
    ):
        read_conditioning(spec_for(str(path), "image2world"), 1, HEIGHT, WIDTH)


def test_pillows_own_bomb_error_is_a_media_error(tmp_path):
    """Past Pillow's own limit (2 x 89.5 M pixels) Image.open raises DecompressionBombError, which is not a
    ValueError; with our pixel limit raised above it, it still reaches the caller as a MediaError."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(20000, 20000))
    with pytest.raises(MediaError, match="refused before decoding: Image size .*decompression bomb"):
        read_image(str(path), limits=MediaLimits(max_pixels=10**9))


@pytest.mark.parametrize(
    "limits, words",
    [
        (MediaLimits(max_bytes=1000), r"the file has \d+ bytes, more than the 1000 allowed here"),
        (MediaLimits(max_pixels=WIDTH * HEIGHT - 1), rf"it is {WIDTH}x{HEIGHT} pixels"),
        (MediaLimits(max_frames=7), "the video has 8 frames, more than the 7 allowed here"),
        (MediaLimits(max_duration_s=0.25), r"the video lasts 0.5 s, longer than the 0.25 s allowed here"),
    ],
)
def test_video_limits_are_checked_before_decoding(tmp_path, s3_bucket, monkeypatch, limits, words):
    clip = write_mp4(gradient_frames(8), fps=16)
    bucket, options = s3_bucket
    with fsspec.open(f"{bucket}/limits/clip.mp4", "wb", **options) as f:
        f.write(clip)
    (tmp_path / "clip.mp4").write_bytes(clip)
    monkeypatch.setattr(video_decode, "_decoded", lambda *args: pytest.fail("frames decoded"))
    for url in (str(tmp_path / "clip.mp4"), f"{bucket}/limits/clip.mp4"):
        with pytest.raises(MediaError, match=rf"sample 'sample-7': cannot read input_path {url}: {words}"):
            read_conditioning(spec_for(url), 5, HEIGHT, WIDTH, storage=Storage(options), limits=limits)


def test_only_the_frames_from_the_keyframe_before_the_last_ones_are_decoded(monkeypatch):
    """40 frames in closed GOPs of 6: the last 5 need the last GOP (4 frames) and the one before (6)."""
    decoded: list[int] = []

    def counting(stream, packets):
        for frame in real(stream, packets):
            decoded.append(frame.pts)
            yield frame

    real = video_decode._decoded
    monkeypatch.setattr(video_decode, "_decoded", counting)
    path = str(GOLDEN_MEDIA / "long_gop.mp4")
    last = read_video(path, last=5)
    assert len(decoded) == 10
    np.testing.assert_array_equal(last, read_video(path)[-5:])  # the same frames as decoding them all


def test_media_limits_from_words_and_mappings():
    assert MediaLimits.from_pairs(["max_pixels=100", "max_duration_s = 2.5"]) == MediaLimits(
        max_pixels=100, max_duration_s=2.5
    )
    assert MediaLimits.from_mapping({"max_frames": 10.0}).max_frames == 10
    with pytest.raises(ValueError, match="unknown media limit max_width; the limits are max_bytes, max_pixels"):
        MediaLimits.from_mapping({"max_width": 3})
    with pytest.raises(ValueError, match="NAME=VALUE"):
        MediaLimits.from_pairs(["max_pixels"])
    with pytest.raises(ValueError, match="must be positive"):
        MediaLimits.from_pairs(["max_pixels=0"])
