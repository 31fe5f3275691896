"""The test server's health probe, its OpenAPI schema (the request body is GenerationSpec) and its docs page."""

from __future__ import annotations

import pytest
import requests

from cosmos_ray.core.spec import GenerationSpec

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it


def test_health_and_openapi(server):
    health = requests.get(f"{server}/healthz", timeout=60)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    paths = requests.get(f"{server}/openapi.json", timeout=60).json()["paths"]
    assert {"/v1/generate", "/v1/jobs", "/v1/jobs/{job_id}", "/healthz"} <= set(paths)
    body = paths["/v1/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["title"] == "GenerationSpec" and body["properties"].keys() == GenerationSpec.model_fields.keys()
    assert requests.get(f"{server}/docs", timeout=60).status_code == 200
