"""Bearer tokens on a second app of the test server's Serve instance: every API endpoint needs the token, the
right one is served, health probes stay open. (Token files and checks without a cluster:
tests/test_serve_policy.py.)"""

from __future__ import annotations

import pytest
import requests
from ray import serve

from pipelines.serve import ServeArgs, build_app
from tests.test_serve.helpers import _frames, _spec

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it

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
