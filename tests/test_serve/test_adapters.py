"""Per-request LoRA adapters in Serve: a request names adapters by the names the deployment allows; each is
generated with the adapter files behind those names, stored under a sample id that names them, and any other
name is refused with the allowed ones.

An app of its own (route prefix /adapters, one more single-GPU replica); the package's server is not changed.
"""

from __future__ import annotations

import pytest
import requests
from ray import serve

from pipelines.serve import ServeArgs, build_app
from tests.adapter_helpers import file_sha256, write_lora
from tests.test_serve.helpers import _spec

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it


@pytest.fixture(scope="module")
def adapter_server(server, tmp_path_factory):
    """The /adapters app: adapters "robot" and "night" allowed, results stored in a local folder."""
    folder = tmp_path_factory.mktemp("served-adapters")
    loras = {"robot": write_lora(folder / "robot.pt", seed=1), "night": write_lora(folder / "night.pt", seed=2)}
    args = ServeArgs(
        preset="tiny", max_replicas=1, allowed_loras=loras, output_url=str(folder / "results"), guardrails=False
    )
    application = build_app(args)
    serve.run(application, name="adapters", route_prefix="/adapters")
    try:
        yield f"{server}/adapters", loras
    finally:
        serve.delete("adapters")


def test_a_request_is_generated_with_the_adapters_it_names(adapter_server):
    url, loras = adapter_server
    body = _spec(name="lit", cosmos_ray_loras=[{"path": "night", "scale": 0.5}, {"path": "robot"}])
    response = requests.post(f"{url}/v1/generate", json=body, timeout=240)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["metadata"]["loras"] == [
        {"path": loras["night"], "scale": 0.5, "sha256": file_sha256(loras["night"])},
        {"path": loras["robot"], "scale": 1.0, "sha256": file_sha256(loras["robot"])},
    ]
    plain = requests.post(f"{url}/v1/generate", json=_spec(name="lit"), timeout=240).json()
    assert "loras" not in plain["metadata"] and plain["sample_id"] != result["sample_id"]
    rescaled = _spec(name="lit", cosmos_ray_loras=[{"path": "night", "scale": 1.0}, {"path": "robot"}])
    again = requests.post(f"{url}/v1/generate", json=rescaled, timeout=240).json()
    assert not again["cached"] and again["sample_id"] not in (result["sample_id"], plain["sample_id"])


def test_an_adapter_the_deployment_does_not_allow_is_refused_with_the_allowed_names(adapter_server):
    url, loras = adapter_server
    for name in ("sunset", loras["robot"]):  # unknown, or a server path instead of a name
        body = _spec(cosmos_ray_loras=[{"path": name}])
        response = requests.post(f"{url}/v1/generate", json=body, timeout=60)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["field"] == "cosmos_ray_loras"
        assert error["reason"].endswith("(allowed: night, robot)")
