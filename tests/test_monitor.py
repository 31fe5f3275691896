"""The batch job's progress line: counts, clips per hour and ETA on a fake clock (no Ray cluster needed)."""

import json
import logging
import re
import time
from pathlib import Path

import pytest

from cosmos_ray.core.outputs import OutputRecord
from pipelines import monitor
from pipelines.monitor import RunMetrics, RunMonitor, format_duration


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(monitor.time, "monotonic", fake)
    return fake


def record(sample_id: str, status: str = "ok", error: str | None = None, seconds: float = 3.0) -> OutputRecord:
    timings = {"text_encode": 0.5, "sampling": 2.0, "decode": 0.5, "group_call": seconds}
    return OutputRecord(sample_id, sample_id, status, error=error, metadata={"timings_s": timings, "world_size": 2})


def test_one_line_per_finished_sample_with_counts_rate_and_eta(clock, caplog):
    run = RunMonitor("run-1")
    run.planned(to_generate=4, statuses=["skipped"] * 5 + ["failed"])
    run.generating(gpus=2)
    assert run.eta_s() is None
    clock.now += 60
    with caplog.at_level(logging.INFO, logger="pipelines.monitor"):
        run.finished(record("a-1", seconds=41.23))
        clock.now += 60
        run.finished(record("b-2", "failed", error="MediaError: input not found"))
    assert caplog.messages == [
        "[1/4] ok a-1 in 41.2s | 1 ok, 1 failed, 5 skipped | 60.0 clips/h | ETA 3m00s",
        "[2/4] failed b-2 in 3.0s: MediaError: input not found | 1 ok, 2 failed, 5 skipped | 30.0 clips/h | ETA 2m00s",
    ]
    assert run.counts == {"ok": 1, "failed": 2, "skipped": 5} and run.done == 2


def test_a_sample_that_never_reached_a_group_has_no_time(clock):
    run = RunMonitor("run-2")
    run.planned(to_generate=1, statuses=["skipped", "duplicate"])
    run.generating(gpus=1)
    clock.now += 10
    bare = OutputRecord("c-3", "c", "failed", error="writing the outputs failed: OSError: disk full")
    run.finished(bare)
    assert run.line(bare) == (
        "[1/1] failed c-3: writing the outputs failed: OSError: disk full | 0 ok, 1 failed, 1 skipped, 1 duplicate | "
        "0.0 clips/h | ETA 0s"
    )


@pytest.mark.parametrize(
    "seconds, text", [(None, "?"), (0, "0s"), (40.4, "40s"), (725, "12m05s"), (3600, "1h00m"), (3900.2, "1h05m")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


class RecordingGauge:
    def __init__(self):
        self.values = []

    def set(self, value, tags=None):
        self.values.append(value)


def test_gauges_are_set_again_while_the_run_lasts(monkeypatch):
    """Ray forgets a gauge that is not set for two export intervals; a sample may take longer than that."""
    monkeypatch.setattr(monitor, "GAUGE_REFRESH_S", 0.01)
    run = RunMonitor("run-3")
    run.metrics.remaining = RecordingGauge()
    with run:
        run.planned(to_generate=7, statuses=[])
        while len(run.metrics.remaining.values) < 5:  # no new sample, yet the gauge keeps being set
            time.sleep(0.01)
    count = len(run.metrics.remaining.values)
    time.sleep(0.05)
    assert len(run.metrics.remaining.values) == count  # closed: the thread has stopped
    assert set(run.metrics.remaining.values) == {7}


def test_the_grafana_dashboard_shows_exactly_the_metrics_the_job_exports():
    dashboard = json.loads((Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "cosmos-ray.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {
        re.sub(r"_(total|bucket|count|sum)$", "", name) for expr in exprs for name in re.findall(r"\bray_\w+", expr)
    }
    exported = {f"ray_{metric.info['name']}" for metric in vars(RunMetrics("r")).values()}
    assert used == exported
    assert all('run_id=~"$run_id"' in expr for expr in exprs)  # every panel follows the run selector
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    assert {variable["name"] for variable in dashboard["templating"]["list"]} == {"datasource", "run_id"}
