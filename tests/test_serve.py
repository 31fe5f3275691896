"""The Serve app: request policy (no Ray), the Serve config file, and the HTTP API on a local Serve instance
with the tiny preset and logical GPUs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from pipelines.serve import (
    RequestPolicy,
    Rejected,
    ServeArgs,
    build_app,
    check_allowed_url,
    parse_spec,
)

REPO = Path(__file__).resolve().parents[1]


def _body(**fields) -> bytes:
    spec = {"inference_type": "text2world", "name": "t", "prompt": "a red cube", **fields}
    return json.dumps(spec).encode()


def _rejection(call, *args) -> Rejected:
    with pytest.raises(Rejected) as caught:
        call(*args)
    return caught.value


# --- request policy -------------------------------------------------------------------------------------


def test_parse_spec_accepts_a_valid_spec():
    spec = parse_spec(_body(num_output_frames=9, seed=3), RequestPolicy())
    assert (spec.inference_type, spec.num_output_frames, spec.seed) == ("text2world", 9, 3)


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
        (_body(num_output_frames=97), 422, "num_output_frames", "at most 93"),
        (_body(resolution="1024,2048"), 422, "resolution", "at most"),
        (_body(num_steps=500), 422, "num_steps", "at most 50"),
    ],
)
def test_parse_spec_rejects_with_field_and_reason(body, status, field, words):
    error = _rejection(parse_spec, body, RequestPolicy())
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
    error = _rejection(check_allowed_url, url, allowed, "input_path")
    assert (error.status, error.field) == (403, "input_path")
    assert words in error.reason


def test_local_prefix_follows_symlinks(tmp_path):
    allowed, outside = tmp_path / "inputs", tmp_path / "private"
    allowed.mkdir()
    outside.mkdir()
    (outside / "a.png").write_bytes(b"x")
    (allowed / "link.png").symlink_to(outside / "a.png")
    check_allowed_url(str(allowed / "b.png"), (f"file://{allowed}",), "input_path")
    error = _rejection(check_allowed_url, str(allowed / "link.png"), (str(allowed),), "input_path")
    assert error.status == 403


def test_parse_spec_applies_the_input_allow_list():
    body = _body(inference_type="image2world", input_path="s3://bucket/private/a.png")
    error = _rejection(parse_spec, body, RequestPolicy(allowed_input_prefixes=("s3://bucket/inputs/",)))
    assert (error.status, error.field) == (403, "input_path")


# --- the Serve config file --------------------------------------------------------------------------------


def test_serve_config_file_is_valid_and_builds():
    from ray.serve.schema import ServeDeploySchema

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


def test_serve_args_refuse_unknown_keys():
    with pytest.raises(ValueError, match="gpus_per_group"):
        ServeArgs.model_validate({"gpus_per_group": 2})


def _deployments(app) -> dict:
    """The application's deployments by name, as Serve builds them for `serve run` / `serve deploy`."""
    from ray.serve._private.build_app import build_app as build_serve_app

    return {deployment.name: deployment for deployment in build_serve_app(app, name="test").deployments}
