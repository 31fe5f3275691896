"""The batch job's GPU groups on a local Ray with logical GPUs: a layout the cluster can never hold fails before
the manifest is read, and the first group waits for free GPUs until the schedule timeout. (The driver's
placement decisions without a cluster: test_placement.py.)"""

import logging

import pytest
import ray

from pipelines import placement
from pipelines.batch import BatchConfig, run
from pipelines.group import GroupConfig
from tests.batch_helpers import manifest_row, spec, write_manifest

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it


def test_a_layout_the_cluster_can_never_hold_fails_before_reading_the_manifest(ray_session, tmp_path):
    manifest = tmp_path / "manifest.parquet"
    write_manifest(str(manifest), [manifest_row(spec("a"), "a.jsonl:1")])
    config = BatchConfig(manifest=str(manifest), output=str(tmp_path / "out"), group=GroupConfig(gpus_per_group=8))
    with pytest.raises(placement.PlacementError) as caught:
        run(config)
    assert str(caught.value).startswith(
        "a GPU group of 8 needs 8 GPUs on one node, but the largest node has 4 and no autoscaler can add nodes"
    )
    assert caught.value.layouts == [(4, 1), (1, 4)]
    assert not (tmp_path / "out" / "runs").exists()


def test_the_first_group_waits_for_free_gpus_until_the_schedule_timeout(ray_session, tmp_path, caplog, monkeypatch):
    manifest = tmp_path / "manifest.parquet"
    write_manifest(str(manifest), [manifest_row(spec("a"), "a.jsonl:1")])
    monkeypatch.setattr(placement, "PLACEMENT_LOG_EVERY_S", 0.5)
    every_gpu = ray.util.placement_group([{"GPU": 1}] * 4, strategy="STRICT_PACK")  # another job holds them all
    assert every_gpu.wait(timeout_seconds=60)
    config = BatchConfig(
        manifest=str(manifest), output=str(tmp_path / "out"), group=GroupConfig(), schedule_timeout_s=2
    )
    try:
        with (
            caplog.at_level(logging.WARNING, logger="pipelines.placement"),
            pytest.raises(placement.PlacementError) as caught,
        ):
            run(config)
    finally:
        ray.util.remove_placement_group(every_gpu)
    assert str(caught.value).startswith("no node had 1 free GPU(s) for a group within 2s")
    assert "waiting for 1 free GPU(s) on one node for the first GPU group" in caplog.text
