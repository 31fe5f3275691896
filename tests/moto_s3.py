"""A real S3 HTTP endpoint for tests: moto's threaded server on a free local port, used through s3fs.

Use it from a test module with `pytest_plugins = ("tests.moto_s3",)`, then take the `s3_bucket` fixture.
"""

import socket
import uuid

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """URL of a moto S3 server that lives for the test module."""
    moto_server = pytest.importorskip("moto.server")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch) -> tuple[str, dict]:
    """(`s3://<fresh bucket>`, storage_options) for one test."""
    boto3 = pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", aws_access_key_id="testing", aws_secret_access_key="testing", **options["client_kwargs"])
    client.create_bucket(Bucket=bucket)
    return f"s3://{bucket}", options
