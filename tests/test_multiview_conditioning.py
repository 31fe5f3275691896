"""Multiview image2world / video2world and the autoregressive mode on the CPU with the tiny preset: each camera's
video read as the official reader reads it (first frames every rate / fps, stretched), each view's first latent
frames held, and the chunks of the autoregressive mode conditioned and stitched as the official loop does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cosmos_ray.autoregressive import Chunk
from cosmos_ray.conditioning import resize
from cosmos_ray.core.media import MediaError, write_mp4
from cosmos_ray.core.multiview_spec import CAMERAS, FRAMES_PER_VIEW, MULTIVIEW_MODEL, MultiviewSpec
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.spec import SpecError
from cosmos_ray.families import load_engine
from cosmos_ray.multiview import HEIGHT_ORDER, MultiviewEngine
from cosmos_ray.multiview_inputs import read_view_frames
from cosmos_ray.sampling import HeldFrames

TINY_SIZE = (64, 96)  # the tiny preset's trained resolution
IN_SIZE = (48, 80)  # the input videos': another aspect ratio, so the stretch shows


def _write_videos(folder: Path, rate: int, num_frames: int, rates: dict[str, int] | None = None) -> dict:
    """One mp4 per camera whose frame i is flat gray 4 i + 8 * camera index (the index survives the codec)."""
    paths = {}
    for index, camera in enumerate(CAMERAS):
        levels = (4 * np.arange(num_frames) + 8 * index) % 256
        frames = np.broadcast_to(levels[:, None, None, None], (num_frames, *IN_SIZE, 3)).astype(np.uint8)
        path = folder / f"{camera}.mp4"
        path.write_bytes(write_mp4(np.ascontiguousarray(frames), (rates or {}).get(camera, rate), quality=10))
        paths[camera] = {"video_path": str(path)}
    return paths


def _spec(inference_type: str, videos: dict, **fields) -> MultiviewSpec:
    return MultiviewSpec.from_dict(
        {"inference_type": inference_type, "name": "drive", "prompt": "A car.", "num_steps": 1, **videos, **fields}
    )


@pytest.fixture(scope="module")
def engine() -> MultiviewEngine:
    built = load_engine(EngineOptions(source="tiny", model=MULTIVIEW_MODEL), device="cpu")
    assert isinstance(built, MultiviewEngine)
    return built


def test_each_camera_is_read_from_frame_0_every_rate_over_fps_and_stretched(tmp_path):
    videos = _write_videos(tmp_path, rate=60, num_frames=1 + 28 * 2)
    frames = read_view_frames(_spec("video2world", videos, fps=30), 5, *TINY_SIZE)
    assert frames.shape == (5, len(CAMERAS), *TINY_SIZE, 3) and frames.dtype == np.uint8
    for index in range(len(CAMERAS)):
        expected = (4 * np.arange(0, 10, 2) + 8 * index) % 256  # frames 0, 2, 4, 6, 8 of the 60 fps video
        assert np.abs(frames[:, index].astype(int).mean(axis=(1, 2, 3)) - expected).max() < 2, CAMERAS[index]
    # the stretch (no crop): a frame with a left/right edge keeps it at the same relative place
    edge = np.zeros((1, *IN_SIZE, 3), np.uint8)
    edge[:, :, : IN_SIZE[1] // 2] = 255
    stretched = resize(edge, *TINY_SIZE)
    assert stretched.shape == (1, *TINY_SIZE, 3)
    assert (stretched[0, :, : TINY_SIZE[1] // 2 - 2] == 255).all() and (
        stretched[0, :, TINY_SIZE[1] // 2 + 2 :] == 0
    ).all()


def test_bad_camera_inputs_name_the_camera_and_field(tmp_path):
    for folder in ("short", "mixed", "rate"):
        (tmp_path / folder).mkdir()
    short = _write_videos(tmp_path / "short", rate=30, num_frames=20)
    with pytest.raises(SpecError, match=r"field 'front_wide.video_path' the video has 20 frames.*at least 29"):
        read_view_frames(_spec("image2world", short), 1, *TINY_SIZE)
    mixed = _write_videos(tmp_path / "mixed", rate=30, num_frames=29, rates={"rear": 15})
    with pytest.raises(SpecError, match=r"field 'video_path' the cameras' videos have different frame rates.*rear 15"):
        read_view_frames(_spec("image2world", mixed), 1, *TINY_SIZE)
    at_30 = _write_videos(tmp_path / "rate", rate=30, num_frames=29)
    with pytest.raises(SpecError, match=r"field 'fps' the input videos' frame rate 30 is not a multiple of fps 20"):
        read_view_frames(_spec("image2world", at_30, fps=20), 1, *TINY_SIZE)
    broken = dict(at_30, rear_left={"video_path": str(tmp_path / "broken.mp4")})
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(MediaError, match=r"sample 'drive': cannot read rear_left.video_path .*broken.mp4"):
        read_view_frames(_spec("image2world", broken), 1, *TINY_SIZE)


class _Stop(Exception):
    pass


def test_video2world_holds_each_views_first_two_latent_frames(engine, tmp_path, monkeypatch):
    videos = _write_videos(tmp_path, rate=30, num_frames=29)
    spec = _spec("video2world", videos, guidance=3)
    seen: dict[str, Any] = {}

    def spy(spec, prompts, conditional, seed, latent_frames, size, progress=None):
        seen.update(held=conditional, latent_frames=latent_frames)
        raise _Stop

    monkeypatch.setattr(engine.generator, "sample_latents", spy)
    with pytest.raises(_Stop):
        engine(spec)
    held, state_t = seen["held"], engine.generator.info.state_t
    assert isinstance(held, HeldFrames) and seen["latent_frames"] == len(CAMERAS) * state_t
    expected_mask = torch.zeros(len(CAMERAS), state_t, dtype=torch.bool)
    expected_mask[:, :2] = True
    assert torch.equal(held.mask, expected_mask.flatten())
    pixels = read_view_frames(spec, 5, *TINY_SIZE)  # (5, V, H, W, 3)
    for v in (0, 4):  # view v's held latents: its first 5 frames encoded on its own
        alone = engine.generator.encode_frames(pixels[:, v])[0]  # (C, 2, h, w)
        ours = held.latents[0, :, v * state_t : v * state_t + 2]
        torch.testing.assert_close(ours, alone, rtol=0, atol=1e-5)
        assert not held.latents[0, :, v * state_t + 2 : (v + 1) * state_t].any()


def test_autoregressive_chunks_are_conditioned_on_the_previous_chunks_last_frames(engine, tmp_path, monkeypatch):
    """Chunk k > 0 of every view: the previous chunk's last `chunk_overlap` frames then black, `chunk_overlap`
    latent frames, the spec's seed; the video is chunk 0 whole and each later chunk from frame `chunk_overlap`."""
    videos = _write_videos(tmp_path, rate=30, num_frames=29)
    spec = _spec("image2world", videos, enable_autoregressive=True, num_chunks=3, chunk_overlap=2, seed=5)
    height, width = TINY_SIZE
    calls: list[tuple[Chunk, np.ndarray]] = []

    def level(frame, chunk, view):  # the fake chunk's frames: flat, by frame, chunk and view
        return ((3 * frame + 100 * chunk + view) % 256).astype(np.uint8)

    def fake_chunk(spec, prompts, chunk, conditioning, timings, progress, num_chunks):
        assert conditioning is not None  # image2world: every chunk is conditioned
        calls.append((chunk, conditioning.copy()))
        levels = level(np.arange(FRAMES_PER_VIEW)[:, None], chunk.index, np.arange(len(CAMERAS)))  # (29, V)
        return np.broadcast_to(levels[:, :, None, None, None], (FRAMES_PER_VIEW, len(CAMERAS), height, width, 3))

    monkeypatch.setattr(engine, "generate_chunk", fake_chunk)
    result = engine(spec)
    assert [(c.index, c.start, c.end, c.num_conditional, c.seed, c.skip) for c, _ in calls] == [
        (0, 0, 29, 1, 5, 0),
        (1, 27, 56, 2, 5, 2),
        (2, 54, 83, 2, 5, 2),
    ]
    assert calls[0][1].shape == (1, len(CAMERAS), height, width, 3)  # the input's first frame per view
    for k in (1, 2):
        conditioning = calls[k][1]
        assert conditioning.shape == (5, len(CAMERAS), height, width, 3)  # 1 + 4 (2 - 1) pixel frames
        for v in range(len(CAMERAS)):
            assert (conditioning[0, v] == level(np.array(27), k - 1, v)).all()  # the previous chunk's frame 27
            assert (conditioning[1, v] == level(np.array(28), k - 1, v)).all()
            assert not conditioning[2:, v].any()  # black after the overlap
    per_view = 29 + 2 * 27
    assert spec.frames_per_view == per_view and result.frames.shape == (len(CAMERAS) * per_view, height, width, 3)
    assert [chunk["seed"] for chunk in result.metadata["chunks"]] == [5, 5, 5]
    front = result.frames[:per_view, 0, 0, 0].astype(int)
    assert list(front[:29]) == list(level(np.arange(29), 0, 0))
    assert list(front[29:56]) == list(level(np.arange(2, 29), 1, 0))
    assert list(front[56:]) == list(level(np.arange(2, 29), 2, 0))

    height_spec = _spec(
        "image2world", videos, enable_autoregressive=True, num_chunks=3, chunk_overlap=2, seed=5, stack_mode="height"
    )
    stacked = engine(height_spec)
    assert stacked.frames.shape == (per_view, len(CAMERAS) * height, width, 3)
    for view in stacked.metadata["views"]:
        start, stop = view["rows"]
        v = CAMERAS.index(view["camera"])
        assert np.array_equal(stacked.frames[:, start:stop], result.frames[v * per_view : (v + 1) * per_view])
    assert [view["camera"] for view in stacked.metadata["views"]] == list(HEIGHT_ORDER)
