"""The test server's guardrails, with the stand-in of tests/guardrail_standin.py: a blocked prompt is refused
before any GPU and recorded; a blocked video is refused, recorded and never stored, on both endpoints. The client
learns what was blocked, never what matched (the record and the server log keep that)."""

from __future__ import annotations

import json

import pytest
import requests
import s3fs

from tests.test_serve.helpers import _spec, _wait_for_job

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it


def test_a_blocked_prompt_is_refused_before_any_gpu_and_recorded(server, s3_endpoint):
    output = "s3://served/results/guarded"
    body = _spec(name="bad-prompt", prompt="a forbidden red cube")
    response = requests.post(f"{server}/v1/generate", params={"output": output}, json=body, timeout=60)
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["field"], error["reason"]) == ("prompt", "prompt blocked by the guardrails")
    assert "forbidden" not in response.text
    job = requests.post(f"{server}/v1/jobs", json=body, timeout=60)
    assert (job.status_code, job.json()["error"]["field"]) == (422, "prompt")  # never queued
    fs = s3fs.S3FileSystem(**s3_endpoint.storage_options)
    (meta,) = fs.glob(f"{output}/meta/*.json")
    record = json.loads(fs.cat_file(meta))
    assert record["status"] == "blocked" and not fs.glob(f"{output}/videos/*")
    assert record["error"] == "prompt blocked by the guardrails: stand-in: the prompt contains 'forbidden'"


def test_a_blocked_video_is_refused_recorded_and_never_stored(server, s3_endpoint):
    output = "s3://served/results/guarded-video"
    body = _spec(name="bad-video", cosmos_ray_num_frames=13)
    response = requests.post(f"{server}/v1/generate", params={"output": output}, json=body, timeout=120)
    assert response.status_code == 422, response.text
    reason = "video blocked by the guardrails"
    error = response.json()["error"]
    assert (error["status"], error["field"], error["reason"]) == (422, None, reason)
    fs = s3fs.S3FileSystem(**s3_endpoint.storage_options)
    (meta,) = fs.glob(f"{output}/meta/*.json")
    recorded = "video blocked by the guardrails: stand-in: a video of 13 frames"
    assert json.loads(fs.cat_file(meta))["error"] == recorded and not fs.glob(f"{output}/videos/*")
    job = requests.post(f"{server}/v1/jobs", json={**body, "seed": 1}, timeout=60).json()
    status = _wait_for_job(server, job["id"])
    assert (status["status"], status["error"]["reason"]) == ("failed", reason)
    assert status["error"]["request_id"]  # the submitting request's: the server log's lines carry it
    health = requests.get(f"{server}/healthz", timeout=30).json()
    assert health["guardrails"] == "guardrails on (--guardrails)"
