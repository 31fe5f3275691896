"""POST /v1/generate on the test server: the video for each inference type, a result stored where asked
(then cached), bad requests and refused inputs with their field and reason, oversized and malformed bodies,
and requests beyond capacity (queued or refused with Retry-After, never lost)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import s3fs

from tests.test_serve.helpers import RETRY_AFTER_S, _frames, _spec

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it


@pytest.mark.parametrize(
    "inference_type, input_name", [("text2world", None), ("image2world", "cube.png"), ("video2world", "cube.mp4")]
)
def test_generate_returns_the_video(server, media_dir, tmp_path, inference_type, input_name):
    extra = {"input_path": str(media_dir / input_name)} if input_name else {}
    response = requests.post(f"{server}/v1/generate", json=_spec(inference_type, **extra), timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    assert _frames(response.content, tmp_path) == (5, (96, 64))


def test_generate_stores_the_result_where_asked(server, s3_endpoint):
    output = "s3://served/results/run1"
    first = requests.post(f"{server}/v1/generate", params={"output": output}, json=_spec(seed=5), timeout=120)
    assert first.status_code == 200, first.text
    result = first.json()
    assert result["video_url"].startswith(output + "/videos/") and not result["cached"]
    fs = s3fs.S3FileSystem(**s3_endpoint.storage_options)
    assert fs.cat_file(result["video_url"])[4:8] == b"ftyp"  # an mp4
    assert json.loads(fs.cat_file(result["metadata_url"]))["status"] == "ok"
    again = requests.post(f"{server}/v1/generate", params={"output": output}, json=_spec(seed=5), timeout=120)
    assert again.json() == {**result, "cached": True}


@pytest.mark.parametrize(
    "spec, params, status, field",
    [
        (_spec(guidance=11), {}, 422, "guidance"),
        (_spec(num_output_frames=0), {}, 422, "num_output_frames"),  # any count >= 1 is valid
        (_spec(cosmos_ray_num_frames=97), {}, 422, "cosmos_ray_num_frames"),
        ({"name": "x", "prompt": "y"}, {}, 422, "inference_type"),
        (_spec(prompt_path="/etc/hostname"), {}, 422, "prompt_path"),
        (_spec("image2world", input_path="/etc/passwd.png"), {}, 403, "input_path"),
        (_spec("image2world", input_path="https://example.com/a.png"), {}, 403, "input_path"),
        (_spec("video2world", input_path="INPUTS/../cube.mp4"), {}, 403, "input_path"),
        (_spec("image2world", input_path="INPUTS/absent.png"), {}, 422, "input_path"),
        (_spec(), {"output": "file:///tmp/elsewhere"}, 403, "output"),
        (_spec(), {"output": "s3://served/other"}, 403, "output"),
    ],
)
def test_bad_requests_get_the_field_and_reason(server, media_dir, spec, params, status, field):
    if "input_path" in spec:
        spec = {**spec, "input_path": spec["input_path"].replace("INPUTS", str(media_dir))}
    response = requests.post(f"{server}/v1/generate", params=params, json=spec, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["reason"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "spec, field, words",
    [
        (_spec("video2world", input_path="INPUTS/short.mp4"), "input_path", "has 3 frames"),  # MediaError
        (_spec("image2world", input_path="INPUTS/bomb.png"), "input_path", "12000x12000 pixels"),  # over a limit
        (
            _spec("video2world", input_path="INPUTS/cube.mp4", cosmos_ray_num_frames=1),
            "cosmos_ray_num_frames",
            "fewer than the 2 conditional latent frames",
        ),  # SpecError raised by the generator
    ],
)
def test_inputs_the_generator_refuses_are_client_errors(server, media_dir, spec, field, words):
    spec = {**spec, "input_path": spec["input_path"].replace("INPUTS", str(media_dir))}
    response = requests.post(f"{server}/v1/generate", json=spec, timeout=120)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and words in error["reason"]
    assert "Traceback" not in response.text


def test_oversized_and_malformed_bodies_are_refused(server):
    huge = _spec(prompt="x" * 100_000)
    assert requests.post(f"{server}/v1/generate", json=huge, timeout=60).status_code == 413
    malformed = requests.post(
        f"{server}/v1/generate", data=b"{", headers={"content-type": "application/json"}, timeout=60
    )
    assert malformed.status_code == 400 and "JSON" in malformed.json()["error"]["reason"]


def test_requests_beyond_capacity_are_queued_or_refused_never_lost(server, tmp_path):
    def post(seed: int) -> requests.Response:
        return requests.post(f"{server}/v1/generate", json=_spec(seed=100 + seed), timeout=300)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(8)))
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) == {200, 503}, statuses  # capacity 3: some served, the rest told to come back
    for response in responses:
        if response.status_code == 503:
            assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
        else:
            assert _frames(response.content, tmp_path)[0] == 5
