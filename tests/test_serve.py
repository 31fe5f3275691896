"""The Serve app's HTTP API on a local Serve instance with the tiny preset and logical GPUs, and the README's
Serve quick start on a fresh local Ray without GPUs. (Policy, tokens and config without a cluster:
test_serve_policy.py.)"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import requests
import s3fs
from PIL import Image
from ray import serve

from cosmos_ray.core.registry import DEFAULT_MODEL, get_model
from cosmos_ray.core.spec import GenerationSpec
from pipelines.serve import ServeArgs, build_app
from tests.guardrail_standin import StandInGuardrails

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it

REPO = Path(__file__).resolve().parents[1]


# --- the HTTP API on a local Serve instance ----------------------------------------------------------------

RETRY_AFTER_S = 7
CHECKS = StandInGuardrails(blocked_frame_counts=(13,))  # the server's guardrails: no other test asks for 13 frames
TINY = {"cosmos_ray_num_frames": 5, "num_steps": 2, "resolution": "none"}  # tiny model's 64x96, a few seconds


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    """Conditioning inputs under the one folder the test server may read."""
    folder = tmp_path_factory.mktemp("inputs")
    frames = np.random.default_rng(0).integers(0, 255, (9, 64, 96, 3), dtype=np.uint8)
    Image.fromarray(frames[0]).save(folder / "cube.png")
    _write_video(folder / "cube.mp4", frames)
    _write_video(folder / "short.mp4", frames[:3])  # video2world needs the last 5 frames of its input
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def _write_video(path: Path, frames: np.ndarray) -> None:
    writer = imageio_ffmpeg.write_frames(str(path), (96, 64), fps=16, macro_block_size=1)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


@pytest.fixture(scope="module")
def server(ray_session, s3_endpoint, media_dir):
    """The app with the tiny preset: one single-GPU replica (logical GPU), room for 3 requests at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ServeArgs(
        preset="tiny",
        gpus_per_replica=1,
        max_replicas=1,
        max_queued_requests=1,  # + 2 ongoing on the replica = capacity 3
        retry_after_s=RETRY_AFTER_S,
        allowed_input_prefixes=[str(media_dir)],
        allowed_output_prefixes=[s3_endpoint.bucket("served") + "/results"],
        storage_options=s3_endpoint.storage_options,
        guardrails=True,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args, CHECKS), name="cosmos", route_prefix="/")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


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


def _wait_for_job(server: str, job_id: str, timeout_s: float = 240, seen: list | None = None) -> dict:
    """The job once finished; `seen` collects every state polled on the way."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = requests.get(f"{server}/v1/jobs/{job_id}", timeout=60).json()
        if seen is not None:
            seen.append(job)
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05 if seen is not None else 0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s}s")


def test_health_and_openapi(server):
    health = requests.get(f"{server}/healthz", timeout=60)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    paths = requests.get(f"{server}/openapi.json", timeout=60).json()["paths"]
    assert {"/v1/generate", "/v1/jobs", "/v1/jobs/{job_id}", "/healthz"} <= set(paths)
    body = paths["/v1/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["title"] == "GenerationSpec" and body["properties"].keys() == GenerationSpec.model_fields.keys()
    assert requests.get(f"{server}/docs", timeout=60).status_code == 200


# --- guardrails (the stand-in of tests/guardrail_standin.py) -------------------------------------------


def test_a_blocked_prompt_is_refused_before_any_gpu_and_recorded(server, s3_endpoint):
    output = "s3://served/results/guarded"
    body = _spec(name="bad-prompt", prompt="a forbidden red cube")
    response = requests.post(f"{server}/v1/generate", params={"output": output}, json=body, timeout=60)
    assert response.status_code == 422
    reason = "prompt blocked by the guardrails: stand-in: the prompt contains 'forbidden'"
    assert response.json()["error"] == {"status": 422, "field": "prompt", "reason": reason}
    job = requests.post(f"{server}/v1/jobs", json=body, timeout=60)
    assert (job.status_code, job.json()["error"]["field"]) == (422, "prompt")  # never queued
    fs = s3fs.S3FileSystem(**s3_endpoint.storage_options)
    (meta,) = fs.glob(f"{output}/meta/*.json")
    assert json.loads(fs.cat_file(meta))["status"] == "blocked" and not fs.glob(f"{output}/videos/*")


def test_a_blocked_video_is_refused_recorded_and_never_stored(server, s3_endpoint):
    output = "s3://served/results/guarded-video"
    body = _spec(name="bad-video", cosmos_ray_num_frames=13)
    response = requests.post(f"{server}/v1/generate", params={"output": output}, json=body, timeout=120)
    assert response.status_code == 422, response.text
    reason = "video blocked by the guardrails: stand-in: a video of 13 frames"
    assert response.json()["error"] == {"status": 422, "field": None, "reason": reason}
    fs = s3fs.S3FileSystem(**s3_endpoint.storage_options)
    (meta,) = fs.glob(f"{output}/meta/*.json")
    assert json.loads(fs.cat_file(meta))["error"] == reason and not fs.glob(f"{output}/videos/*")
    job = requests.post(f"{server}/v1/jobs", json={**body, "seed": 1}, timeout=60).json()
    status = _wait_for_job(server, job["id"])
    assert (status["status"], status["error"]["reason"]) == ("failed", reason)
    health = requests.get(f"{server}/healthz", timeout=30).json()
    assert health["guardrails"] == "guardrails on (--guardrails)"


# --- bearer tokens -------------------------------------------------------------------------------------------

TOKEN = "s3cr3t-token"


@pytest.fixture(scope="module")
def secured(server, tmp_path_factory):
    """A second app on the same Serve instance, under /secured, that accepts one token from a file."""
    tokens_file = tmp_path_factory.mktemp("secret") / "api-tokens"
    tokens_file.write_text(f"# one token per line\n{TOKEN}\n")
    args = ServeArgs(preset="tiny", max_replicas=1, api_tokens_file=str(tokens_file))
    serve.run(build_app(args), name="secured", route_prefix="/secured")
    yield f"{server}/secured"
    serve.delete("secured")


@pytest.mark.parametrize(
    "method, path",
    [("POST", "/v1/generate"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/x"), ("GET", "/v1/jobs/x/video")],
)
def test_the_api_needs_a_token_when_tokens_are_configured(secured, method, path):
    missing = requests.request(method, secured + path, json=_spec(), timeout=60)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = requests.request(method, secured + path, json=_spec(), headers={"Authorization": "Bearer x"}, timeout=60)
    assert wrong.status_code == 403
    assert TOKEN not in missing.text + wrong.text


def test_the_right_token_is_served_and_health_stays_open(secured, tmp_path):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(f"{secured}/v1/jobs/unknown", headers=headers, timeout=60).status_code == 404  # past auth
    response = requests.post(f"{secured}/v1/generate", json=_spec(seed=400), headers=headers, timeout=300)
    assert response.status_code == 200, response.text
    assert _frames(response.content, tmp_path) == (5, (96, 64))
    assert requests.get(f"{secured}/healthz", timeout=60).status_code == 200  # probes carry no token


# --- the README's quick start ------------------------------------------------------------------------------


def _readme_command(prefix: str) -> list[str]:
    """The README's command line that starts with `prefix` (continuation lines joined, comments dropped)."""
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    (line,) = [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]
    return shlex.split(line, comments=True)


def test_the_readme_serve_quick_start_works_without_gpus(tmp_path):
    """The README's `serve run` line as written, on a fresh local Ray that has no GPU (as on a laptop), then
    the request of the README's curl line."""
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", 8000)) == 0:
            pytest.skip("port 8000, where the quick start serves, is taken on this machine")
    command = _readme_command("serve run ")
    curl = _readme_command("curl ")
    body = REPO / curl[curl.index("-d") + 1].removeprefix("@")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # this venv's `serve`
        "RAY_ADDRESS": "local",  # a Ray of its own, never the test session's (which has logical GPUs)
        "CUDA_VISIBLE_DEVICES": "",  # and no GPU, whatever the machine has
    }
    log = tmp_path / "serve-run.log"
    with open(log, "wb") as output:
        served = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_until_healthy("http://localhost:8000", served, log, timeout_s=600)
        response = requests.post(
            "http://localhost:8000/v1/generate",
            data=body.read_bytes(),
            headers={"content-type": "application/json"},
            timeout=300,
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "video/mp4"
        spec = json.loads(body.read_text())
        native = 1 + 4 * (get_model(DEFAULT_MODEL).state_t - 1)  # the released models' 93 frames
        assert _frames(response.content, tmp_path) == (spec.get("cosmos_ray_num_frames", native), (96, 64))
    finally:
        _stop(served)


def _wait_until_healthy(url: str, served: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert served.poll() is None, f"`serve run` exited:\n{log.read_text()[-3000:]}"
        try:
            if requests.get(f"{url}/healthz", timeout=10).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or too busy starting to answer
            pass
        time.sleep(2)
    raise AssertionError(f"not serving after {timeout_s}s:\n{log.read_text()[-3000:]}")


def _stop(served: subprocess.Popen) -> None:
    """Ctrl-C, as a user would (Serve shuts the app down and the Ray it started); then kill what is left."""
    os.killpg(served.pid, signal.SIGINT)
    try:
        served.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(served.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    served.wait()
