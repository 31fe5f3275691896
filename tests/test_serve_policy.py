"""The Serve app without a cluster: request policy, bearer tokens, the arguments and the Serve config file."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import os
from pathlib import Path

import pytest
import yaml
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve._private.build_app import build_app as build_serve_app
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from cosmos_ray.core import guardrails
from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.guardrails import Blocked
from cosmos_ray.core.media import MediaError, UnreadableMediaError
from cosmos_ray.core.offload_config import OffloadConfig
from cosmos_ray.core.spec import GenerationSpec, SpecError
from pipelines.group import SampleError
from pipelines.serve import ServeArgs, app, build_app
from pipelines.serve.auth import ANONYMOUS, TOKENS_ENV, BearerAuth, require_auth_or_loopback
from pipelines.serve.ingress import api
from pipelines.serve.jobs import Job
from pipelines.serve.policy import ApiError, RequestPolicy, check_allowed_url, parse_spec
from pipelines.serve.replica import SERVER_LOG, Failed, failure

REPO = Path(__file__).resolve().parents[1]


def _body(**fields) -> bytes:
    spec = {"inference_type": "text2world", "name": "t", "prompt": "a red cube", **fields}
    return json.dumps(spec).encode()


def _api_error(call, *args) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args)
    return caught.value


# --- request policy -------------------------------------------------------------------------------------


def _policy(**args) -> RequestPolicy:
    """The request policy of a server started with these arguments (and the defaults for the rest)."""
    return RequestPolicy.from_args(ServeArgs(**args))


def test_parse_spec_accepts_a_valid_spec():
    spec = parse_spec(_body(cosmos_ray_num_frames=9, seed=3), _policy())
    assert isinstance(spec, GenerationSpec)
    assert (spec.inference_type, spec.cosmos_ray_num_frames, spec.seed) == ("text2world", 9, 3)
    native = parse_spec(_body(), _policy())
    assert isinstance(native, GenerationSpec) and native.cosmos_ray_num_frames is None  # the model's native length


def test_openapi_documents_the_request_body_with_the_spec_schema():
    """Both POST routes show GenerationSpec's JSON Schema (built without starting Ray or Serve)."""
    expected = GenerationSpec.model_json_schema()
    for prop in expected["properties"].values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]  # FastAPI's OpenAPI leaves out null values
    paths = api.openapi()["paths"]
    for path in ("/v1/generate", "/v1/jobs"):
        assert paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"] == expected


@pytest.mark.parametrize(
    "body, status, field, words",
    [
        (b"{not json", 400, None, "not valid JSON"),
        (b"[1, 2]", 422, None, "not a JSON object"),
        (_body(guidance=9), 422, "guidance", "0..7"),
        (_body(num_output_frames=0), 422, "num_output_frames", "at least 1"),
        (_body(colour="red"), 422, "colour", "not a known field"),
        (_body(inference_type="image2world"), 422, "input_path", "required"),
        (_body(prompt_path="/etc/hostname"), 422, "prompt_path", "not accepted over HTTP"),
        (_body(cosmos_ray_num_frames=10), 422, "cosmos_ray_num_frames", "1 + 4k"),
        (_body(cosmos_ray_num_frames=97), 422, "cosmos_ray_num_frames", "at most 93"),
        (_body(resolution="1024,2048"), 422, "resolution", "at most"),
        (_body(num_steps=500), 422, "num_steps", "at most 50"),
        (_body(num_generations=2), 422, "num_generations", "asks for 2 videos; a request makes one"),
    ],
)
def test_parse_spec_rejects_with_field_and_reason(body, status, field, words):
    error = _api_error(parse_spec, body, _policy())
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
    job = Job(id="j", sample_id="s", owner="o", request_id="r", status="running", step=3, total_steps=4, chunk=2)
    job.num_chunks = 3
    assert job.progress == pytest.approx((1 + 3 / 4) / 3)
    assert {"chunk": 2, "num_chunks": 3}.items() <= job.to_json().items()
    assert "owner" not in job.to_json()  # a digest of the token, never shown
    assert Job(id="j", sample_id="s", owner="o", request_id="r", status="running").progress == 0.0


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
        (  # the decoder's words (with the server's temporary paths) stay in the log
            UnreadableMediaError("sample 'x': cannot read input_path a.mp4: ffmpeg: /tmp/tmpab12/in.mp4: moov atom"),
            Failed(422, "input_path", "cannot read input_path as an image or video (" + SERVER_LOG + ")"),
        ),
        (  # what the guardrails matched goes to the record and the log only
            Blocked("video", "frame 4 is Violence"),
            Failed(
                422,
                None,
                "video blocked by the guardrails",
                True,
                "video blocked by the guardrails: frame 4 is " + "Violence",
            ),
        ),
        (RuntimeError("CUDA out of memory"), Failed(500, None, f"generation failed ({SERVER_LOG})")),
        (None, Failed(500, None, f"generation failed ({SERVER_LOG})")),  # a rank died
    ],
)
def test_failed_generations_blame_the_request_only_for_its_spec_or_input(cause, expected, caplog):
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        failed = failure(SampleError("RuntimeError: CUDA out of memory", cause=cause), "req-1")
    assert failed == expected
    if expected.status == 500 or "ffmpeg" in str(cause):
        assert "request req-1" in caplog.text  # the details, under the id the client got


def test_parse_spec_applies_the_input_allow_list():
    body = _body(inference_type="image2world", input_path="s3://bucket/private/a.png")
    error = _api_error(parse_spec, body, _policy(allowed_input_prefixes=["s3://bucket/inputs/"]))
    assert (error.status, error.field) == (403, "input_path")


def test_requests_name_adapters_the_operator_allows_and_get_their_files():
    allowed = {"robot": "s3://models/loras/robot.safetensors", "night": "/mnt/loras/night.pt"}
    policy = _policy(allowed_loras=allowed)
    spec = parse_spec(_body(cosmos_ray_loras=[{"path": "night", "scale": 0.5}, {"path": "robot"}]), policy)
    assert spec.cosmos_ray_loras == (
        LoraRef("/mnt/loras/night.pt", 0.5),
        LoraRef("s3://models/loras/robot.safetensors"),
    )
    assert spec.sample_id != parse_spec(_body(), policy).sample_id
    assert parse_spec(_body(), policy).to_dict() == GenerationSpec.from_dict(json.loads(_body())).to_dict()  # stock


@pytest.mark.parametrize(
    "allowed, entry, words",
    [
        (
            {"robot": "/mnt/robot.pt"},
            {"path": "/mnt/robot.pt"},
            "adapter '/mnt/robot.pt' is not one this server "
            "allows; send the name of an allowed adapter as 'path' (allowed: robot)",
        ),
        ({"b": "/b.pt", "a": "s3://x/a.pt"}, {"path": "c", "scale": 2}, "(allowed: a, b)"),
        ({}, {"path": "robot"}, "(allowed: none (the operator allows no adapters))"),
    ],
)
def test_adapters_the_operator_does_not_allow_are_refused_with_the_allowed_names(allowed, entry, words):
    error = _api_error(parse_spec, _body(cosmos_ray_loras=[entry]), _policy(allowed_loras=allowed))
    assert (error.status, error.field) == (422, "cosmos_ray_loras")
    assert words in error.reason
    assert "/b.pt" not in error.reason and "s3://x" not in error.reason  # never the server's files


def test_malformed_adapters_and_other_checkpoints_are_refused():
    policy = _policy(allowed_loras={"robot": "/mnt/robot.pt"})
    error = _api_error(parse_spec, _body(cosmos_ray_loras=[{"path": "robot", "weight": 1}]), policy)
    assert (error.status, error.field) == (422, "cosmos_ray_loras") and "entry 0 must be an object" in error.reason
    error = _api_error(parse_spec, _body(cosmos_ray_checkpoint="/mnt/other.pt"), policy)
    assert (error.status, error.field) == (422, "cosmos_ray_checkpoint")
    assert "does not run" in error.reason and "/mnt/other.pt" not in error.reason


def test_the_deployments_weights_go_into_every_request():
    default = (LoraRef("/mnt/loras/house.pt"),)
    policy = dataclasses.replace(
        _policy(allowed_loras={"robot": "/mnt/robot.pt"}), checkpoint="/mnt/ft.pt", default_loras=default
    )
    plain = parse_spec(_body(), policy)
    assert (plain.cosmos_ray_checkpoint, plain.cosmos_ray_loras) == ("/mnt/ft.pt", default)
    assert parse_spec(_body(cosmos_ray_checkpoint="/mnt/ft.pt"), policy) == plain
    assert parse_spec(_body(cosmos_ray_loras=[]), policy).cosmos_ray_loras == ()
    own = parse_spec(_body(cosmos_ray_loras=[{"path": "robot"}]), policy)
    assert own.cosmos_ray_loras == (LoraRef("/mnt/robot.pt"),)


def test_allowed_adapters_are_absolute_paths_or_urls():
    ServeArgs(allowed_loras={"a": "s3://b/a.pt", "b": "/mnt/b.pt", "c": "~/c.pt"})
    with pytest.raises(
        ValueError, match="adapter 'a' is at 'loras/a.pt', a relative path; give an absolute path or a URL"
    ):
        ServeArgs(allowed_loras={"a": "loras/a.pt"})
    with pytest.raises(ValueError, match="an adapter name must not be empty"):
        ServeArgs(allowed_loras={" ": "/a.pt"})


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
        app,  # type: ignore[arg-type]  # a function, which its annotation calls FunctionType
        {"preset": "tiny", "gpus_per_replica": "2", "max_replicas": "3"},
    )
    replicas = _deployments(built)["GroupReplica"]
    assert len(replicas._replica_config.placement_group_bundles) == 2
    assert replicas._deployment_config.autoscaling_config.max_replicas == 3


def test_serve_args_choose_the_model_and_its_offloading():
    built = call_user_app_builder_with_args_if_necessary(
        app,  # type: ignore[arg-type]  # a function, which its annotation calls FunctionType
        {"preset": "random-14B", "model": "14B/post-trained", "offload_text_encoder": "true"},
    )
    group_config, time_limit_s = _deployments(built)["GroupReplica"]._replica_config.init_args
    assert time_limit_s == 1800  # the 14B's sample is one reference clip of work: the base time limit
    assert (group_config.engine.source, group_config.engine.model) == ("random-14B", "14B/post-trained")
    assert group_config.engine.offload == OffloadConfig(text_encoder=True)
    with pytest.raises(ValueError, match="unknown model '14B'; the official models are"):
        build_app(ServeArgs(model="14B"))


def test_serve_args_refuse_unknown_keys():
    with pytest.raises(ValueError, match="gpus_per_group"):
        ServeArgs.model_validate({"gpus_per_group": 2})


def _deployments(app) -> dict:
    """The application's deployments by name, as Serve builds them for `serve run` / `serve deploy`."""
    return {deployment.name: deployment for deployment in build_serve_app(app, name="test").deployments}


@pytest.mark.parametrize("url", ["inputs/a.png", "./a.png", "~/a.png", "file://inputs/a.png"])
def test_relative_paths_are_refused_without_showing_server_paths(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inputs").mkdir()
    body = _body(inference_type="image2world", input_path=url)
    error = _api_error(parse_spec, body, _policy(allowed_input_prefixes=[str(tmp_path)]))
    assert (error.status, error.field) == (403, "input_path")
    assert "relative path" in error.reason
    assert str(tmp_path) not in error.reason and os.path.expanduser("~") not in error.reason


def test_a_refused_absolute_path_is_quoted_as_sent():
    error = _api_error(parse_spec, _body(inference_type="image2world", input_path="/srv/x/a.png"), _policy())
    assert error.status == 403 and error.reason.startswith("'/srv/x/a.png' is not under")


def test_the_policy_takes_its_limits_from_the_arguments():
    policy = _policy(max_num_frames=9, max_pixels=64 * 96, max_num_steps=3, max_request_bytes=2048)
    assert (policy.limits.max_num_output_frames, policy.limits.max_pixels, policy.limits.max_num_steps) == (9, 6144, 3)
    assert policy.max_request_bytes == 2048
    error = _api_error(parse_spec, _body(num_output_frames=9, num_steps=4), policy)
    assert (error.status, error.field) == (422, "num_steps") and "at most 3" in error.reason


# --- bearer tokens ---------------------------------------------------------------------------------------


@pytest.fixture
def no_token_env(monkeypatch):
    monkeypatch.delenv(TOKENS_ENV, raising=False)


def test_without_tokens_authentication_is_off(no_token_env):
    auth = BearerAuth.from_sources(None)
    assert not auth.enabled
    auth.check(None)  # nothing to check against: every request passes


def test_tokens_from_the_environment_and_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv(TOKENS_ENV, " alpha , ,beta")
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("# mounted from a Secret\n\ngamma\n")
    auth = BearerAuth.from_sources(str(tokens_file))
    for token in ("alpha", "beta", "gamma"):
        auth.check(f"Bearer {token}")
    auth.check("bearer gamma")  # the scheme is case-insensitive (RFC 7235)


@pytest.mark.parametrize(
    "authorization, status",
    [(None, 401), ("", 401), ("Basic YWxwaGE6eA==", 401), ("Bearer alphx", 403), ("Bearer ", 403), ("Bearer # x", 403)],
)
def test_a_missing_token_is_401_and_a_wrong_one_403(monkeypatch, authorization, status):
    monkeypatch.setenv(TOKENS_ENV, "alpha")
    error = _api_error(BearerAuth.from_sources(None).check, authorization)
    assert error.status == status
    assert "alpha" not in error.reason
    if status == 401:
        assert error.headers == {"WWW-Authenticate": "Bearer"}


def test_tokens_are_compared_in_constant_time_against_every_token(monkeypatch):
    monkeypatch.setenv(TOKENS_ENV, "alpha,beta,gamma")
    auth = BearerAuth.from_sources(None)
    compared = []
    real_compare = hmac.compare_digest

    def recording_compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording_compare)
    auth.check("Bearer alpha")  # the first token matches; the others are compared all the same
    assert len(compared) == 3
    assert all(len(a) == len(b) == hashlib.sha256().digest_size for a, b in compared)  # digests, not the tokens


@pytest.mark.parametrize("value", [" , ,", "", " "])
def test_a_token_variable_that_names_no_token_is_an_error(monkeypatch, value):
    monkeypatch.setenv(TOKENS_ENV, value)
    with pytest.raises(ValueError, match=f"{TOKENS_ENV} is set but names no token"):  # never silently off
        BearerAuth.from_sources(None)


def test_each_token_is_its_own_owner_and_without_tokens_everyone_is_anonymous(monkeypatch):
    monkeypatch.setenv(TOKENS_ENV, "alpha,beta")
    auth = BearerAuth.from_sources(None)
    alpha, beta = auth.check("Bearer alpha"), auth.check("Bearer beta")
    assert alpha != beta and auth.check("bearer alpha") == alpha
    assert "alpha" not in alpha and len(alpha) == 16  # a digest prefix, never the token
    monkeypatch.delenv(TOKENS_ENV)
    assert BearerAuth.from_sources(None).check(None) == ANONYMOUS


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_without_tokens_serve_may_listen_on_loopback(no_token_env, host):
    require_auth_or_loopback(BearerAuth.from_sources(None), host, allow_unauthenticated=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "head.example"])
def test_without_tokens_serve_refuses_to_listen_beyond_loopback_unless_told(no_token_env, monkeypatch, host):
    with pytest.raises(ValueError, match="allow_unauthenticated=true") as caught:
        require_auth_or_loopback(BearerAuth.from_sources(None), host, allow_unauthenticated=False)
    assert TOKENS_ENV in str(caught.value) and repr(host) in str(caught.value)
    require_auth_or_loopback(BearerAuth.from_sources(None), host, allow_unauthenticated=True)  # explicitly open
    monkeypatch.setenv(TOKENS_ENV, "alpha")
    require_auth_or_loopback(BearerAuth.from_sources(None), host, allow_unauthenticated=False)  # closed


def test_a_request_over_the_cost_limit_is_refused_at_parse_time():
    """The issue-28 request: 93 windows of one frame each, each a whole generation; every field within its limit."""
    fields = {"enable_autoregressive": True, "num_output_frames": 93, "chunk_size": 1, "chunk_overlap": 0}
    error = _api_error(parse_spec, _body(**fields, num_steps=50), _policy())
    assert (error.status, error.field) == (422, "chunk_size")
    assert "93 window(s)" in error.reason and "max_cost" in error.reason
    parse_spec(_body(**fields, num_steps=50), _policy(max_cost=200))  # an operator may allow it
    parse_spec(_body(enable_autoregressive=True, num_output_frames=93), _policy())  # the official chunking: 2 windows


@pytest.mark.parametrize("content", [None, "", "# only a comment\n\n"])
def test_a_tokens_file_that_names_no_token_is_an_error(no_token_env, tmp_path, content):
    tokens_file = tmp_path / "tokens"
    if content is not None:
        tokens_file.write_text(content)
    with pytest.raises(ValueError, match="api_tokens_file"):  # never silently off
        BearerAuth.from_sources(str(tokens_file))


# --- the arguments ----------------------------------------------------------------------------------------


def test_without_gpus_replicas_ask_for_no_gpu():
    replicas = _deployments(build_app(ServeArgs(preset="tiny", use_gpus=False, gpus_per_replica=2)))["GroupReplica"]
    assert replicas._replica_config.placement_group_bundles == [{"CPU": 1}] * 2


def test_http_inputs_are_allowed_exactly_where_the_allow_list_names_them():
    assert not ServeArgs(allowed_input_prefixes=["s3://bucket/in/"]).storage().allow_http
    assert ServeArgs(allowed_input_prefixes=["s3://b/", "https://media.example.com/pub/"]).storage().allow_http
    assert ServeArgs(storage_options={"anon": True}).storage().options == {"anon": True}


def test_serve_config_file_scales_the_replicas_within_the_cluster():
    """jobs/serve_config.yaml replaces the GroupReplica autoscaling_config (Serve applies it whole)."""
    config = yaml.safe_load((REPO / "jobs" / "serve_config.yaml").read_text())
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    (application,) = config["applications"]
    (replicas,) = [d for d in application["deployments"] if d["name"] == "GroupReplica"]
    scaling = AutoscalingConfig(**replicas["autoscaling_config"])  # Serve's own validation
    assert scaling.initial_replicas is not None
    assert 1 <= scaling.min_replicas <= scaling.initial_replicas <= scaling.max_replicas
    assert scaling.get_target_ongoing_requests() == 1  # one clip per replica at a time
    assert scaling.upscale_delay_s < scaling.downscale_delay_s
    gpus = ServeArgs.model_validate(application["args"]).gpus_per_replica
    cluster_gpus = sum(
        node.get("max_workers", 0) * node["resources"].get("GPU", 0)
        for node in cluster["available_node_types"].values()
    )
    assert scaling.max_replicas * gpus <= cluster_gpus


@pytest.mark.parametrize(
    ("model", "max_cost", "time_limit_s"),
    [
        ("2B/post-trained", 3.0, 1800),  # one reference clip: the base defaults
        ("2B/auto/multiview", 7.8, 3130),  # 5.2 clips: 1.5 of them, and 1800 s per 3 clips
        ("2B/robot/multiview-agibot", 12.2, 4870),  # 8.1 clips
    ],
)
def test_the_cost_and_time_limits_default_to_room_for_one_official_sample_of_the_model(model, max_cost, time_limit_s):
    """Without an operator's value, a deployment of a multiview model still takes its own official sample (which is
    several reference clips: its views attend to each other) and gives it time to finish."""
    args = ServeArgs(preset="tiny", model=model)
    assert args.spec_limits().max_cost == pytest.approx(max_cost, abs=0.05)
    assert args.request_time_limit_s() == pytest.approx(time_limit_s, abs=10)
    operator = ServeArgs(preset="tiny", model=model, max_cost=2.0, max_request_s=60)
    assert (operator.spec_limits().max_cost, operator.request_time_limit_s()) == (2.0, 60)
