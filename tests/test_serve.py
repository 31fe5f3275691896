"""The Serve app: request policy (no Ray), the Serve config file, and the HTTP API on a local Serve instance
with the tiny preset and logical GPUs."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import requests
import s3fs
import yaml
from PIL import Image
from ray import serve
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve._private.build_app import build_app as build_serve_app
from ray.serve.schema import ServeDeploySchema

from cosmos_ray import guardrails
from cosmos_ray.guardrails import Blocked
from cosmos_ray.media import MediaError
from cosmos_ray.spec import SpecError
from pipelines.group import SampleError
from pipelines.serve import (
    ApiError,
    Failed,
    Job,
    RequestPolicy,
    ServeArgs,
    app,
    build_app,
    check_allowed_url,
    failure,
    parse_spec,
)
from tests.guardrail_standin import StandInGuardrails

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it

REPO = Path(__file__).resolve().parents[1]


def _body(**fields) -> bytes:
    spec = {"inference_type": "text2world", "name": "t", "prompt": "a red cube", **fields}
    return json.dumps(spec).encode()


def _api_error(call, *args) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args)
    return caught.value


# --- request policy -------------------------------------------------------------------------------------


def test_parse_spec_accepts_a_valid_spec():
    spec = parse_spec(_body(cosmos_ray_num_frames=9, seed=3), RequestPolicy())
    assert (spec.inference_type, spec.cosmos_ray_num_frames, spec.seed) == ("text2world", 9, 3)
    assert parse_spec(_body(), RequestPolicy()).cosmos_ray_num_frames is None  # the model's native length


@pytest.mark.parametrize(
    "body, status, field, words",
    [
        (b"{not json", 400, None, "not valid JSON"),
        (b"[1, 2]", 422, None, "not a JSON object"),
        (_body(guidance=9), 422, "guidance", "0..7"),
        (_body(num_output_frames=10), 422, "num_output_frames", "1 + 4k"),
        (_body(colour="red"), 422, "colour", "not a known field"),
        (_body(inference_type="image2world"), 422, "input_path", "required"),
        (_body(prompt_path="/etc/hostname"), 422, "prompt_path", "not accepted over HTTP"),
        (_body(cosmos_ray_num_frames=10), 422, "cosmos_ray_num_frames", "1 + 4k"),
        (_body(cosmos_ray_num_frames=97), 422, "cosmos_ray_num_frames", "at most 93"),
        (_body(resolution="1024,2048"), 422, "resolution", "at most"),
        (_body(num_steps=500), 422, "num_steps", "at most 50"),
    ],
)
def test_parse_spec_rejects_with_field_and_reason(body, status, field, words):
    error = _api_error(parse_spec, body, RequestPolicy())
    assert (error.status, error.field) == (status, field)
    assert words in error.reason


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("s3://bucket/inputs/a.png", ("s3://bucket/inputs/",)),
        ("s3://bucket/inputs/deep/a.png", ("s3://bucket/inputs",)),  # prefix without trailing slash
        ("S3://bucket/inputs/a.png", ("s3://bucket/inputs/",)),
        ("https://media.example.com/pub/a.mp4", ("https://media.example.com/pub/",)),
    ],
)
def test_allowed_urls(url, allowed):
    check_allowed_url(url, allowed, "input_path")


@pytest.mark.parametrize(
    "url, allowed, words",
    [
        ("/etc/passwd.png", (), "not under"),  # server files: nothing is allowed by default
        ("file:///etc/passwd.png", (), "not under"),
        ("https://evil.example.com/a.png", (), "not under"),
        ("s3://bucket/inputs/a.png", (), "not under"),
        ("s3://bucket/inputs-private/a.png", ("s3://bucket/inputs/",), "not under"),  # "/" boundary
        ("s3://other/inputs/a.png", ("s3://bucket/inputs/",), "not under"),
        ("s3://bucket/inputs/../secret/a.png", ("s3://bucket/inputs/",), "'..'"),
        ("s3://bucket/inputs/%2e%2e/secret/a.png", ("s3://bucket/inputs/",), "'..'"),
        ("s3://bucket/inputs/a.png::file:///etc/x.png", ("s3://bucket/inputs/",), "chaining"),
        ("https://media.example.com@evil.com/a.png", ("https://media.example.com/",), "not under"),
        ("s3://bucket/inputs/a\n.png", ("s3://bucket/inputs/",), "control"),
    ],
)
def test_forbidden_urls(url, allowed, words):
    error = _api_error(check_allowed_url, url, allowed, "input_path")
    assert (error.status, error.field) == (403, "input_path")
    assert words in error.reason


def test_local_prefix_follows_symlinks(tmp_path):
    allowed, outside = tmp_path / "inputs", tmp_path / "private"
    allowed.mkdir()
    outside.mkdir()
    (outside / "a.png").write_bytes(b"x")
    (allowed / "link.png").symlink_to(outside / "a.png")
    check_allowed_url(str(allowed / "b.png"), (f"file://{allowed}",), "input_path")
    error = _api_error(check_allowed_url, str(allowed / "link.png"), (str(allowed),), "input_path")
    assert error.status == 403


def test_job_progress_counts_the_steps_of_every_window():
    job = Job(id="j", sample_id="s", status="running", step=3, total_steps=4, chunk=2, num_chunks=3)
    assert job.progress == pytest.approx((1 + 3 / 4) / 3)
    assert {"chunk": 2, "num_chunks": 3}.items() <= job.to_json().items()
    assert Job(id="j", sample_id="s", status="running").progress == 0.0


@pytest.mark.parametrize(
    "cause, expected",
    [
        (
            SpecError("'x'", "cosmos_ray_num_frames", "makes too few latent frames"),
            Failed(422, "cosmos_ray_num_frames", "makes too few latent frames"),
        ),
        (
            MediaError("sample 'x': input video a.mp4 has 3 frames"),
            Failed(422, "input_path", "sample 'x': input video a.mp4 has 3 frames"),
        ),
        (
            Blocked("video", "frame 4 is Violence"),
            Failed(422, None, "video blocked by the guardrails: frame 4 is Violence", blocked=True),
        ),
        (RuntimeError("CUDA out of memory"), Failed(500, None, "generation failed: RuntimeError: CUDA out of memory")),
        (None, Failed(500, None, "generation failed: RuntimeError: CUDA out of memory")),  # a rank died
    ],
)
def test_failed_generations_blame_the_request_only_for_its_spec_or_input(cause, expected):
    assert failure(SampleError("RuntimeError: CUDA out of memory", cause=cause)) == expected


def test_parse_spec_applies_the_input_allow_list():
    body = _body(inference_type="image2world", input_path="s3://bucket/private/a.png")
    error = _api_error(parse_spec, body, RequestPolicy(allowed_input_prefixes=("s3://bucket/inputs/",)))
    assert (error.status, error.field) == (403, "input_path")


# --- the Serve config file --------------------------------------------------------------------------------


def test_serve_config_file_is_valid_and_builds(monkeypatch):
    monkeypatch.setattr(guardrails.importlib.util, "find_spec", lambda name: True)  # the cluster has the extra
    config = ServeDeploySchema.model_validate(yaml.safe_load((REPO / "jobs" / "serve_config.yaml").read_text()))
    (application,) = config.applications
    assert application.import_path == "pipelines.serve:app"
    args = ServeArgs.model_validate(application.args)
    deployments = _deployments(build_app(args))
    assert set(deployments) == {"ApiIngress", "GroupReplica", "JobBoard"}
    replicas = deployments["GroupReplica"]
    assert replicas._replica_config.placement_group_bundles == [{"CPU": 1, "GPU": 1}] * args.gpus_per_replica
    assert replicas._replica_config.placement_group_strategy == "STRICT_PACK"
    assert replicas._deployment_config.autoscaling_config.max_replicas == args.max_replicas
    assert replicas.max_queued_requests == args.max_queued_requests


def test_serve_run_arguments_build_the_app():
    """`serve run pipelines.serve:app preset=tiny gpus_per_replica=2 max_replicas=3` (arguments are strings)."""
    built = call_user_app_builder_with_args_if_necessary(
        app, {"preset": "tiny", "gpus_per_replica": "2", "max_replicas": "3"}
    )
    replicas = _deployments(built)["GroupReplica"]
    assert len(replicas._replica_config.placement_group_bundles) == 2
    assert replicas._deployment_config.autoscaling_config.max_replicas == 3


def test_serve_args_refuse_unknown_keys():
    with pytest.raises(ValueError, match="gpus_per_group"):
        ServeArgs.model_validate({"gpus_per_group": 2})


def _deployments(app) -> dict:
    """The application's deployments by name, as Serve builds them for `serve run` / `serve deploy`."""
    return {deployment.name: deployment for deployment in build_serve_app(app, name="test").deployments}


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
        (_spec(num_output_frames=8), {}, 422, "num_output_frames"),
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
    seen = []
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
    seen = []
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
    assert requests.get(f"{server}/docs", timeout=60).status_code == 200


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
    for _ in range(240):
        status = requests.get(f"{server}/v1/jobs/{job['id']}", timeout=10).json()
        if status["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.5)
    assert (status["status"], status["error"]["reason"]) == ("failed", reason)
    health = requests.get(f"{server}/healthz", timeout=30).json()
    assert health["guardrails"] == "guardrails on (--guardrails)"
