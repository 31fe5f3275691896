"""A batch job's progress on a local Ray: its progress lines in the log, and its metrics as Prometheus scrapes
them from Ray's metrics endpoint. (The progress line on a fake clock: test_monitor.py.)"""

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from pipelines.batch import BatchConfig, run
from pipelines.group import GroupConfig
from tests.batch_helpers import manifest_row, spec, wait_for, write_manifest

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it


def test_a_runs_progress_is_logged_and_visible_through_rays_metrics_endpoint(ray_session, tmp_path, caplog):
    """One progress line per finished sample; the driver's Ray metrics, scraped as Prometheus does: gauges
    while the run lasts (Ray keeps a gauge only while it is set), counters and stage histograms after it."""
    specs = [spec(f"metrics-{i}", seed=i, guidance=0, num_steps=1) for i in range(3)] + [spec("bad", guidance=9)]
    manifest = tmp_path / "manifest.parquet"
    write_manifest(str(manifest), [manifest_row(data, f"m.jsonl:{i + 1}") for i, data in enumerate(specs)])
    config = BatchConfig(
        manifest=str(manifest), output=str(tmp_path / "out"), groups=1, run_id="metrics", group=GroupConfig()
    )
    url = f"http://127.0.0.1:{ray_session.address_info['metrics_export_port']}/metrics"
    seen: dict = {}

    def scraped(expected: dict) -> bool:
        seen.clear()
        for family in text_string_to_metric_families(requests.get(url, timeout=10).text):
            for sample in family.samples:
                if sample.labels.get("run_id") == "metrics":
                    key = (sample.name, sample.labels.get("status", sample.labels.get("stage")))
                    seen[key] = seen.get(key, 0.0) + sample.value
        return all(seen.get(key) == value for key, value in expected.items())

    with ThreadPoolExecutor(max_workers=1) as pool, caplog.at_level(logging.INFO, logger="pipelines.monitor"):
        job = pool.submit(run, config)
        while_running = {("ray_cosmos_ray_gpus", None): 1.0}
        wait_for(lambda: scraped(while_running), timeout_s=300, describe=lambda: f"scraped {seen}")
        assert seen[("ray_cosmos_ray_samples_remaining", None)] in (0.0, 1.0, 2.0, 3.0)
        summary = job.result()
    assert (summary.ok, summary.failed) == (3, 1)
    lines = [message for message in caplog.messages if " clips/h | ETA " in message]
    assert [line.split(" ")[:2] for line in lines] == [["[1/3]", "ok"], ["[2/3]", "ok"], ["[3/3]", "ok"]]
    assert " | 3 ok, 1 failed, 0 skipped | " in lines[-1] and lines[-1].endswith(" | ETA 0s")
    after = {
        ("ray_cosmos_ray_samples_total", "ok"): 3.0,
        ("ray_cosmos_ray_samples_total", "failed"): 1.0,  # the invalid row
        ("ray_cosmos_ray_stage_seconds_count", "sampling"): 3.0,
        ("ray_cosmos_ray_stage_seconds_count", "mp4_encode"): 3.0,
    }
    wait_for(lambda: scraped(after), timeout_s=120, describe=lambda: f"expected {after}, scraped {seen}")
    assert seen[("ray_cosmos_ray_denoising_gpu_seconds_total", None)] > 0
