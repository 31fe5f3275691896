"""What the Serve tests share: the test server's settings, a tiny spec, an mp4's frame count and size, and
waiting for a job."""

from __future__ import annotations

import time
from pathlib import Path

import imageio_ffmpeg
import requests

from tests.guardrail_standin import StandInGuardrails

RETRY_AFTER_S = 7
CHECKS = StandInGuardrails(blocked_frame_counts=(13,))  # the server's guardrails: no other test asks for 13 frames
TINY = {"cosmos_ray_num_frames": 5, "num_steps": 2, "resolution": "none"}  # tiny model's 64x96, a few seconds


def _spec(inference_type="text2world", **fields) -> dict:
    return {
        "inference_type": inference_type,
        "name": f"{inference_type}-test",
        "prompt": "a red cube slides",
        **TINY,
        **fields,
    }


def _frames(mp4: bytes, tmp_path: Path) -> tuple[int, tuple[int, int]]:
    """(frame count, (width, height)) of an mp4."""
    path = tmp_path / "video.mp4"
    path.write_bytes(mp4)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return sum(1 for _ in reader), tuple(meta["size"])


def _wait_for_job(
    server: str, job_id: str, timeout_s: float = 240, seen: list | None = None, headers: dict | None = None
) -> dict:
    """The job once finished; `seen` collects every state polled on the way."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = requests.get(f"{server}/v1/jobs/{job_id}", headers=headers, timeout=60).json()
        if seen is not None:
            seen.append(job)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05 if seen is not None else 0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s}s")
