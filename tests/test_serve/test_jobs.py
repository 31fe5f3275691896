"""The async jobs of the test server (POST /v1/jobs, GET /v1/jobs/{id}): run in order with their status,
denoising steps as they run, the windows of a long video, the video of a finished job."""

from __future__ import annotations

import pytest
import requests

from tests.test_serve.helpers import _frames, _spec, _wait_for_job

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it


def test_async_jobs_run_in_order_and_report_status(server, media_dir, tmp_path):
    specs = [_spec(seed=200 + i) for i in range(4)] + [_spec("image2world", input_path=str(media_dir / "broken.png"))]
    submitted = [requests.post(f"{server}/v1/jobs", json=spec, timeout=60) for spec in specs]
    assert [response.status_code for response in submitted] == [202] * 5  # more than capacity: all queued
    jobs = [response.json() for response in submitted]
    assert submitted[0].headers["Location"] == f"/v1/jobs/{jobs[0]['id']}"
    assert all(job["status"] in ("queued", "running") for job in jobs)
    finished = [_wait_for_job(server, job["id"]) for job in jobs]
    assert [job["status"] for job in finished] == ["succeeded"] * 4 + ["failed"]
    done_at = [job["finished_at"] for job in finished[:4]]
    assert done_at == sorted(done_at)  # one replica, first in first out
    assert finished[-1]["error"]["status"] == 422 and finished[-1]["error"]["field"] == "input_path"
    assert "cannot read input_path" in finished[-1]["error"]["reason"]
    video = requests.get(server + finished[0]["result"]["video_url"], timeout=60)
    assert video.status_code == 200 and _frames(video.content, tmp_path)[0] == 5
    assert requests.get(f"{server}/v1/jobs/nonexistent", timeout=60).status_code == 404


def test_a_running_job_reports_its_denoising_steps(server):
    job = requests.post(f"{server}/v1/jobs", json=_spec(seed=300, num_steps=6), timeout=60).json()
    seen: list[dict] = []
    finished = _wait_for_job(server, job["id"], seen=seen)
    assert finished["status"] == "succeeded"
    assert finished["step"] == finished["total_steps"] >= 6  # the sampler's model evaluations, at least one a step
    assert finished["progress"] == 1.0
    steps = [polled["step"] for polled in seen]
    assert steps == sorted(steps)  # monotonic
    progress = [polled["progress"] for polled in seen]
    assert progress == sorted(progress) and all(0 <= value <= 1 for value in progress)


def test_a_long_video_job_reports_its_windows(server, tmp_path):
    spec = _spec(
        seed=301,
        enable_autoregressive=True,
        num_output_frames=17,
        chunk_size=9,
        chunk_overlap=1,
        resolution="32,32",
        cosmos_ray_num_frames=None,  # the length is num_output_frames
    )
    job = requests.post(f"{server}/v1/jobs", json=spec, timeout=60).json()
    seen: list[dict] = []
    finished = _wait_for_job(server, job["id"], seen=seen)
    assert finished["status"] == "succeeded", finished
    assert (finished["chunk"], finished["num_chunks"]) == (2, 2)
    assert [chunk["frames"] for chunk in finished["result"]["metadata"]["chunks"]] == [[0, 9], [8, 17]]
    running = [(polled["chunk"], polled["step"]) for polled in seen if polled["status"] == "running"]
    assert running == sorted(running)  # window by window, step by step
    progress = [polled["progress"] for polled in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    video = requests.get(server + finished["result"]["video_url"], timeout=60)
    assert _frames(video.content, tmp_path) == (17, (32, 32))
