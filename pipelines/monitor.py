"""What a batch run shows while it runs: one progress line per finished sample, and the same counts as Ray
metrics (exported to Prometheus by Ray; docs/monitoring.md).

    [37/120] ok pour-3fa2c1d9e0ab in 41.2s | 35 ok, 2 failed, 10 skipped | 52.1 clips/h | ETA 1h35m

Both live on the driver, which sees every record: the progress line is `RunMonitor.finished`, the metrics are
`RunMetrics`. Per-step progress of a sample is logged at debug level by the pool actor that owns its group,
never here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally

from ray.util.metrics import Counter, Gauge, Histogram

from cosmos_ray.core.outputs import BLOCKED, DUPLICATE, FAILED, OK, SKIPPED, OutputRecord

logger = logging.getLogger(__name__)

# Ray drops a gauge's value when it has not been set for two export intervals (about 20 s by default), and a
# sample can take minutes: the monitor sets its gauges again this often while the run lasts.
GAUGE_REFRESH_S = 5.0
# Per-sample seconds of a stage: from a fraction of a second (the tiny preset, an mp4 encode) to tens of minutes.
STAGE_SECONDS_BOUNDARIES = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 2400]


class RunMetrics:
    """The run's counters as Ray metrics, every one tagged with the run's id.

    Exported names (Ray adds the `ray_` prefix, Prometheus the `_total`/`_bucket` suffixes):
    `cosmos_ray_samples{status}` (ok, failed, skipped, duplicate, blocked), `cosmos_ray_samples_remaining`
    (samples still to generate: the queue depth), `cosmos_ray_gpus` (GPUs the run's groups hold),
    `cosmos_ray_denoising_gpu_seconds` (denoising time x GPUs of the group, summed over samples) and
    `cosmos_ray_stage_seconds{stage}` (seconds of each stage of each sample: the generator's stages, the group
    call, the mp4 encode).
    """

    def __init__(self, run_id: str):
        tags = {"run_id": run_id}
        self.samples = Counter(
            "cosmos_ray_samples", description="Samples of the run by status.", tag_keys=("run_id", "status")
        ).set_default_tags(tags)
        self.remaining = Gauge(
            "cosmos_ray_samples_remaining", description="Samples still to generate.", tag_keys=("run_id",)
        ).set_default_tags(tags)
        self.gpus = Gauge(
            "cosmos_ray_gpus", description="GPUs the run's groups hold.", tag_keys=("run_id",)
        ).set_default_tags(tags)
        self.denoising_gpu_seconds = Counter(
            "cosmos_ray_denoising_gpu_seconds",
            description="Denoising seconds x GPUs of the group, summed over the generated samples.",
            tag_keys=("run_id",),
        ).set_default_tags(tags)
        self.stage_seconds = Histogram(
            "cosmos_ray_stage_seconds",
            description="Seconds of one stage of one sample.",
            boundaries=STAGE_SECONDS_BOUNDARIES,
            tag_keys=("run_id", "stage"),
        ).set_default_tags(tags)


class RunMonitor:
    """Counts a run's samples, logs one line per finished sample and keeps `RunMetrics` up to date.

    A context manager: while it is open, a thread keeps the gauges alive. `planned` gives the statuses of the
    samples that need no GPU (skipped, duplicate, invalid rows as failed) and how many are to generate;
    `generating` starts the clock of the rate and ETA (model loading included, so early estimates are high);
    `finished` takes each generated sample's record.
    """

    def __init__(self, run_id: str):
        self.metrics = RunMetrics(run_id)
        self.counts = Tally({OK: 0, FAILED: 0, SKIPPED: 0})
        self.to_generate = 0
        self.done = 0
        self.gpus = 0.0
        self._started: float | None = None
        self._closed = threading.Event()
        self._gauges = threading.Thread(target=self._keep_gauges, name="cosmos-ray-gauges", daemon=True)

    def __enter__(self) -> RunMonitor:
        self._gauges.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closed.set()
        self._gauges.join()

    def planned(self, *, to_generate: int, statuses: list[str]) -> None:
        self.to_generate = to_generate
        for status, count in Tally(statuses).items():
            self.counts[status] += count
            self.metrics.samples.inc(count, tags={"status": status})
        self._set_gauges()

    def generating(self, gpus: float) -> None:
        self._started = time.monotonic()
        self.gpus = gpus
        self._set_gauges()

    def finished(self, record: OutputRecord) -> None:
        """A generated sample's record: count it, export it, log its line."""
        self.done += 1
        self.counts[record.status] += 1
        self.metrics.samples.inc(tags={"status": record.status})
        self._set_gauges()
        timings = record.metadata.get("timings_s", {})
        for stage, seconds in timings.items():
            self.metrics.stage_seconds.observe(seconds, tags={"stage": stage})
        if "sampling" in timings:
            self.metrics.denoising_gpu_seconds.inc(timings["sampling"] * record.metadata.get("world_size", 1))
        logger.info("%s", self.line(record))

    def line(self, record: OutputRecord) -> str:
        """`[done/total] status sample in Ns | ok, failed, skipped | clips/h | ETA` (the error for a failure)."""
        took = record.metadata.get("timings_s", {}).get("group_call")
        took_text = f" in {took:.1f}s" if took is not None else ""
        error = f": {record.error}" if record.error else ""
        counts = f"{self.counts[OK]} ok, {self.counts[FAILED]} failed, {self.counts[SKIPPED]} skipped"
        if self.counts[DUPLICATE]:
            counts += f", {self.counts[DUPLICATE]} duplicate"
        if self.counts[BLOCKED]:
            counts += f", {self.counts[BLOCKED]} blocked"
        return (
            f"[{self.done}/{self.to_generate}] {record.status} {record.sample_id}{took_text}{error} | {counts} | "
            f"{self.clips_per_hour():.1f} clips/h | ETA {format_duration(self.eta_s())}"
        )

    def clips_per_hour(self) -> float:
        elapsed = self._elapsed()
        return self.counts[OK] * 3600.0 / elapsed if elapsed else 0.0

    def eta_s(self) -> float | None:
        """Seconds until every sample is generated at the rate so far; None before the first one."""
        elapsed = self._elapsed()
        if not self.done or not elapsed:
            return None
        return (self.to_generate - self.done) * elapsed / self.done

    def _set_gauges(self) -> None:
        self.metrics.remaining.set(self.to_generate - self.done)
        self.metrics.gpus.set(self.gpus)

    def _keep_gauges(self) -> None:
        while not self._closed.wait(GAUGE_REFRESH_S):
            self._set_gauges()

    def _elapsed(self) -> float:
        return time.monotonic() - self._started if self._started is not None else 0.0


def format_duration(seconds: float | None) -> str:
    """`1h05m`, `12m05s`, `40s`; `?` when unknown."""
    if seconds is None:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
