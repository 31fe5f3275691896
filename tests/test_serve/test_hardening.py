"""Issue 28 on the test server's Serve instance (loopback only): jobs owned by their token, DELETE, per-token
quotas, a generation that stops when its job is deleted, its client goes away or its time runs out (seen in the
replica's metric), request ids in errors, and no cached video the guardrails never checked."""

from __future__ import annotations

import json

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from ray import serve

from cosmos_ray.core.outputs import OutputStore
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.storage import Storage
from pipelines.serve import ServeArgs, build_app
from tests.batch_helpers import wait_for
from tests.test_serve.helpers import _spec, _wait_for_job

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it

ALICE, BOB = "alice-token", "bob-token"
STOPPED = "ray_cosmos_ray_serve_generations_stopped_total"
# The request, 93 windows of 50 guided steps, at a size that keeps it within the cost limit (0.9 reference
# clips): long on a CPU (minutes), so the tests see it stopped long before its end.
LONG = {
    "enable_autoregressive": True,
    "num_output_frames": 93,
    "chunk_size": 1,
    "chunk_overlap": 0,
    "num_steps": 50,
    "resolution": "64,96",
    "cosmos_ray_num_frames": None,
}


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def hardened(server, tmp_path_factory):
    """An app under /hardened with two clients' tokens and a quota of one generation each (replicas on CPU)."""
    tokens_file = tmp_path_factory.mktemp("secret") / "api-tokens"
    tokens_file.write_text(f"{ALICE}\n{BOB}\n")
    args = ServeArgs(preset="tiny", use_gpus=False, api_tokens_file=str(tokens_file), max_active_per_token=1)
    serve.run(build_app(args), name="hardened", route_prefix="/hardened")
    yield f"{server}/hardened"
    serve.delete("hardened")


@pytest.fixture(scope="module")
def stopped(ray_session):
    """The replicas' count of stopped generations by why, as Prometheus scrapes it."""
    url = f"http://127.0.0.1:{ray_session.address_info['metrics_export_port']}/metrics"

    def count(why: str) -> float:
        families = text_string_to_metric_families(requests.get(url, timeout=10).text)
        return sum(
            sample.value
            for family in families
            for sample in family.samples
            if sample.name == STOPPED and sample.labels.get("why") == why
        )

    return count


def _running(server: str, job_id: str, headers: dict[str, str]) -> dict:
    """The job once its first denoising step is done."""
    seen: list[dict] = []

    def stepped() -> bool:
        seen.append(requests.get(f"{server}/v1/jobs/{job_id}", headers=headers, timeout=60).json())
        return seen[-1]["status"] == "running" and seen[-1]["step"] >= 1

    wait_for(stepped, timeout_s=240, describe=lambda: f"job {job_id}: {seen[-1:]}")
    return seen[-1]


def test_a_job_belongs_to_the_token_that_made_it(hardened):
    job = requests.post(f"{hardened}/v1/jobs", json=_spec(seed=500), headers=_as(ALICE), timeout=60).json()
    for method, path in [("GET", ""), ("GET", "/video"), ("DELETE", "")]:  # another token: no such job
        response = requests.request(method, f"{hardened}/v1/jobs/{job['id']}{path}", headers=_as(BOB), timeout=60)
        assert response.status_code == 404, (method, path)
    finished = _wait_for_job(hardened, job["id"], headers=_as(ALICE))
    assert finished["status"] == "succeeded"
    assert requests.get(hardened + finished["result"]["video_url"], headers=_as(ALICE), timeout=60).status_code == 200
    forgotten = requests.delete(f"{hardened}/v1/jobs/{job['id']}", headers=_as(ALICE), timeout=60)
    assert forgotten.status_code == 200 and forgotten.json()["status"] == "succeeded"  # a finished job: forgotten
    assert requests.get(f"{hardened}/v1/jobs/{job['id']}", headers=_as(ALICE), timeout=60).status_code == 404


def test_deleting_a_running_job_stops_its_generation_and_frees_its_quota(hardened, stopped):
    before = stopped("cancelled")
    job = requests.post(f"{hardened}/v1/jobs", json=_spec(seed=501, **LONG), headers=_as(ALICE), timeout=60).json()
    running = _running(hardened, job["id"], _as(ALICE))
    assert running["num_chunks"] == 93
    # one generation at a time per token: a second one is refused (429), another token's is not
    over = requests.post(f"{hardened}/v1/jobs", json=_spec(seed=502), headers=_as(ALICE), timeout=60)
    assert over.status_code == 429 and "quota" in over.json()["error"]["reason"] and over.headers["Retry-After"]
    generate = requests.post(f"{hardened}/v1/generate", json=_spec(seed=502), headers=_as(ALICE), timeout=60)
    assert generate.status_code == 429
    other = requests.post(f"{hardened}/v1/jobs", json=_spec(seed=503), headers=_as(BOB), timeout=60)
    assert other.status_code == 202

    deleted = requests.delete(f"{hardened}/v1/jobs/{job['id']}", headers=_as(ALICE), timeout=60)
    assert deleted.status_code == 200 and deleted.json()["status"] == "cancelled"
    wait_for(lambda: stopped("cancelled") == before + 1, timeout_s=120, describe=lambda: "no generation stopped")
    after = requests.get(f"{hardened}/v1/jobs/{job['id']}", headers=_as(ALICE), timeout=60).json()
    assert after["status"] == "cancelled" and (after["chunk"], after["step"]) < (93, after["total_steps"])
    # the quota is free again, and the replica serves the next generations
    again = requests.post(f"{hardened}/v1/jobs", json=_spec(seed=504), headers=_as(ALICE), timeout=60)
    assert again.status_code == 202
    assert _wait_for_job(hardened, again.json()["id"], headers=_as(ALICE))["status"] == "succeeded"
    assert _wait_for_job(hardened, other.json()["id"], headers=_as(BOB))["status"] == "succeeded"


def test_a_client_that_goes_away_stops_its_generation(hardened, stopped):
    before = stopped("cancelled")
    # the client gives up and closes its connection; after 20 s, not 3: on a loaded machine a request may take
    # seconds to reach the replica, and a client gone before its generation began leaves nothing to stop
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{hardened}/v1/generate", json=_spec(seed=505, **LONG), headers=_as(BOB), timeout=(10, 20))
    wait_for(lambda: stopped("cancelled") == before + 1, timeout_s=120, describe=lambda: "no generation stopped")
    response = requests.post(f"{hardened}/v1/generate", json=_spec(seed=506), headers=_as(BOB), timeout=300)
    assert response.status_code == 200  # the replica goes on


def test_a_generation_past_the_time_limit_is_stopped_with_a_504(server, stopped):
    args = ServeArgs(preset="tiny", use_gpus=False, max_request_s=0.001)  # less than any first step
    serve.run(build_app(args), name="limited", route_prefix="/limited")
    try:
        before = stopped("time_limit")
        response = requests.post(f"{server}/limited/v1/generate", json=_spec(seed=507), timeout=300)
        assert response.status_code == 504, response.text
        error = response.json()["error"]
        assert "time limit (0.001 s)" in error["reason"] and error["request_id"] == response.headers["X-Request-ID"]
        wait_for(lambda: stopped("time_limit") == before + 1, timeout_s=120, describe=lambda: "nothing stopped")
    finally:
        serve.delete("limited")


def test_errors_carry_the_request_id_of_the_response(server):
    response = requests.post(f"{server}/v1/generate", json=_spec(guidance=11), timeout=60)
    assert response.status_code == 422
    assert response.json()["error"]["request_id"] == response.headers["X-Request-ID"] != ""


def test_a_stored_video_the_guardrails_never_checked_is_not_served_as_cached(server, s3_endpoint):
    """The test server runs guardrails; a record written with them off (metadata guardrails None) is generated
    again, and the new record says which guardrails checked it."""
    output = s3_endpoint.bucket("served") + "/results/unchecked"
    spec = _spec(seed=508)
    store = OutputStore(output, Storage(options=s3_endpoint.storage_options))
    store.write_ok(GenerationSpec.from_dict(spec, source="request"), b"unchecked mp4", {"guardrails": None})
    response = requests.post(f"{server}/v1/generate", params={"output": output}, json=spec, timeout=300)
    assert response.status_code == 200, response.text
    assert response.json()["cached"] is False and response.json()["metadata"]["guardrails"]
    again = requests.post(f"{server}/v1/generate", params={"output": output}, json=spec, timeout=300)
    assert again.json()["cached"] is True  # now it was checked
    assert json.loads(store.storage.read_text(store.meta_url(response.json()["sample_id"])))["metadata"]["guardrails"]
