"""What a batch job is given (`BatchConfig`) and what it returns (`Summary`)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cosmos_ray.core.guardrails import GuardrailSetting
from cosmos_ray.core.limits import SpecLimits
from cosmos_ray.core.storage import Storage
from pipelines.batch.sinks import Sink, SinkConfig
from pipelines.group import GroupConfig


@dataclass(frozen=True)
class BatchConfig:
    """One batch job."""

    manifest: str  # Parquet manifest URL (docs/manifest.md)
    output: str  # output root URL (docs/outputs.md)
    group: GroupConfig = field(default_factory=GroupConfig)
    # GPU groups: a fixed pool size, (min, max) to autoscale, or None for as many as the nodes hold now (>= 1)
    groups: int | tuple[int, int] | None = None
    limit: int | None = None  # use only the first `limit` manifest rows
    num_generations: int | None = None  # videos per spec for every row (each spec's own field if None)
    limits: SpecLimits = field(default_factory=SpecLimits)  # a spec over a limit is an invalid row
    run_id: str | None = None  # default: UTC time + random suffix
    writer_cpus: float = 1.0  # CPUs per mp4-encode-and-upload task (and per background task of a sink)
    schedule_timeout_s: float = 1800.0  # how long to wait for the GPUs of the first group (e.g. a node to come)
    # Where finished samples go besides the per-sample files (always on): e.g. WebDataset shards,
    # `WebDatasetSink(ShardConfig(...))` or `SinkConfig("webdataset", {...})` (pipelines/batch/sinks/)
    sinks: tuple[Sink | SinkConfig, ...] = ()
    guardrails: GuardrailSetting | None = None  # None: the default for the model (`guardrail_setting`)
    # The job stops (`StorageGone`, resumable) once this many samples in a row could not be written.
    max_storage_failures: int = 5

    def __post_init__(self) -> None:
        if self.max_storage_failures < 1:
            raise ValueError(f"max_storage_failures must be at least 1, got {self.max_storage_failures}")
        if self.groups is not None:
            sizes = self.groups if isinstance(self.groups, tuple) else (self.groups, self.groups)
            if len(sizes) != 2 or not 1 <= sizes[0] <= sizes[1]:
                raise ValueError(f"groups must be a count >= 1 or (min, max) with 1 <= min <= max, got {self.groups}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")
        if self.schedule_timeout_s <= 0:
            raise ValueError(f"schedule_timeout_s must be positive, got {self.schedule_timeout_s}")
        if self.num_generations is not None and not 1 <= self.num_generations <= self.limits.max_num_generations:
            limit = self.limits.max_num_generations
            raise ValueError(f"num_generations must be in 1..{limit} (the limit), got {self.num_generations}")

    @property
    def storage(self) -> Storage:
        """The job's one storage handle (the engine's): it reaches the manifest, output and input URLs."""
        return self.group.engine.storage

    @property
    def guardrail_setting(self) -> GuardrailSetting:
        return self.guardrails or self.group.engine.guardrail_setting()


@dataclass(frozen=True)
class Summary:
    """What a run did."""

    run_id: str
    ok: int
    failed: int
    skipped: int
    wall_s: float
    run_table_url: str
    gpus: float  # GPUs the run's groups held (largest pool size x GPUs per group); 0 if nothing was generated
    denoising_gpu_s: float  # sum over generated samples of denoising time x GPUs of its group (a share of one)
    duplicates: int = 0  # rows whose sample an earlier row of the manifest already has
    blocked: int = 0  # samples whose prompt or video the guardrails refused
    guardrails: str = ""  # whether the run had guardrails, and why (`GuardrailSetting`)
    not_finished: int = 0  # samples left to generate when the run was interrupted (Ctrl-C)
    sink_reports: tuple[str, ...] = ()  # what the sinks did, in their order, e.g. "4 shard(s) written"

    @property
    def interrupted(self) -> bool:
        return self.not_finished > 0

    @property
    def videos_per_hour(self) -> float:
        return self.ok * 3600.0 / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def denoising_share(self) -> float:
        """Share of the run's GPU time (wall time x GPUs, model loading included) spent denoising."""
        return self.denoising_gpu_s / (self.wall_s * self.gpus) if self.wall_s > 0 and self.gpus else 0.0

    def __str__(self) -> str:
        duplicates = f", {self.duplicates} duplicate" if self.duplicates else ""
        interrupted = f" (interrupted: {self.not_finished} not finished)" if self.interrupted else ""
        sinks = "".join(f", {report}" for report in self.sink_reports)
        gpus = f"{self.gpus:g} GPU{'' if self.gpus == 1 else 's'}"
        return (
            f"run {self.run_id}{interrupted}: {self.ok} ok, {self.failed} failed, {self.blocked} blocked, "
            f"{self.skipped} skipped{duplicates}{sinks} in {self.wall_s:.1f}s ({self.videos_per_hour:.1f} "
            f"videos/hour, {gpus} denoising {self.denoising_share:.0%} of the time); {self.guardrails}; "
            f"table: {self.run_table_url}"
        )


def new_run_id() -> str:
    """A sortable, unique run id: `20250101T120000Z-1a2b3c`."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
