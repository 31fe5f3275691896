"""Shared fixtures: a local S3 endpoint (moto server) and one local Ray cluster with logical GPUs.

Both are session-scoped because they are slow to start. `ray_session` depends on `s3_endpoint` so that the
S3 settings are in the environment before Ray starts: Ray's worker processes inherit the environment of the
process that starts the cluster, so every actor (and fsspec inside it) reaches the same endpoint.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

RAY_LOGICAL_CPUS = 8
RAY_LOGICAL_GPUS = 4  # logical: lets CPU-only tests schedule GPU actors and placement groups


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` skip, with the reason, where torch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `pytest -m gpu` on the device machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Endpoint(str):
    """The URL of a moto S3 server on localhost (usable wherever the URL string is expected), with the
    fsspec/s3fs options that reach it and a bucket helper."""

    @property
    def url(self) -> str:
        return str(self)

    @property
    def storage_options(self) -> dict:
        return {"endpoint_url": self.url, "key": "testing", "secret": "testing"}

    def bucket(self, name: str) -> str:
        """Create bucket `name` (if missing) and return its URL, `s3://name`."""
        import s3fs

        fs = s3fs.S3FileSystem(**self.storage_options)
        if not fs.exists(name):
            fs.mkdir(name)
        return f"s3://{name}"


@pytest.fixture(scope="session")
def s3_endpoint():
    """Start a moto S3 server on 127.0.0.1 and point the AWS environment variables at it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = S3Endpoint(f"http://127.0.0.1:{port}")
    overrides = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint.url,  # honoured by botocore, hence by s3fs without storage options
    }
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint) -> tuple[str, dict]:
    """(`s3://<fresh bucket>`, storage_options) for one test."""
    url = s3_endpoint.bucket(f"test-{uuid.uuid4().hex[:12]}")
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": s3_endpoint.url, "region_name": "us-east-1"},
    }
    return url, options


@pytest.fixture(scope="session")
def ray_session(s3_endpoint):
    """A local Ray cluster with logical GPUs, shared by every test of the session. It exports its metrics for
    Prometheus at http://127.0.0.1:{context.address_info["metrics_export_port"]}/metrics."""
    ray = pytest.importorskip("ray")
    context = ray.init(
        num_cpus=RAY_LOGICAL_CPUS,
        num_gpus=RAY_LOGICAL_GPUS,
        include_dashboard=False,
        _metrics_export_port=_free_port(),
    )
    try:
        yield context
    finally:
        ray.shutdown()
