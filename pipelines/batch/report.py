"""What the batch job's driver tells: the plan's counts and odd rows, the failures at the end, the `Summary`,
and the one line of an error that stopped a run."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from ray.exceptions import RayError, RayTaskError

from cosmos_ray.core.outputs import BLOCKED, DUPLICATE, FAILED, OK, SKIPPED, OutputRecord
from cosmos_ray.core.storage import StorageError
from pipelines import placement
from pipelines.batch.config import Summary
from pipelines.batch.plan import Plan

logger = logging.getLogger(__name__)

MAX_LISTED_FAILURES = 20  # invalid and duplicate rows logged before generation, failures listed at the end


class StorageGone(RuntimeError):
    """The run stopped because the outputs of `count` samples in a row could not be written (the storage is full,
    read-only or unreachable): generating more would only throw their GPU time away. Resumable: nothing of those
    samples was committed, and a rerun generates them."""

    def __init__(self, count: int, last_error: str):
        self.count = count
        self.last_error = last_error
        super().__init__(
            f"stopped: the outputs of {count} samples in a row could not be written (the last: {last_error}); "
            "fix the output storage, then rerun the same command to resume"
        )

    def __reduce__(self) -> tuple[type[StorageGone], tuple[int, str]]:
        return type(self), (self.count, self.last_error)


def log_plan(run_id: str, plan: Plan) -> None:
    """The run's counts, then each invalid row (up to `MAX_LISTED_FAILURES`) and each duplicate row."""
    records = plan.records.values()
    by_status = {status: [r for r in records if r.status == status] for status in (SKIPPED, DUPLICATE, FAILED)}
    logger.info(
        "run %s: %d samples, %d to generate, %d already done, %d duplicate, %d invalid",
        run_id,
        len(plan.records) + len(plan.pending),
        len(plan.pending),
        len(by_status[SKIPPED]),
        len(by_status[DUPLICATE]),
        len(by_status[FAILED]),
    )
    for record in by_status[FAILED][:MAX_LISTED_FAILURES]:
        logger.warning("invalid row: %s", record.error)
    if len(by_status[FAILED]) > MAX_LISTED_FAILURES:
        logger.warning("... and %d more invalid rows", len(by_status[FAILED]) - MAX_LISTED_FAILURES)
    for record in by_status[DUPLICATE][:MAX_LISTED_FAILURES]:
        logger.info(
            "duplicate row %s: sample %s is the one of %s; generated once",
            record.source,
            record.sample_id,
            record.metadata["duplicate_of"],
        )


def log_failures(records: Mapping[int, OutputRecord]) -> None:
    """The failures of the run (invalid rows and failed samples), then the samples the guardrails blocked, in
    manifest order, up to a cap each."""
    for status, title in ((FAILED, "failure(s)"), (BLOCKED, "sample(s) blocked by the guardrails")):
        listed = [records[row] for row in sorted(records) if records[row].status == status]
        if listed:
            logger.warning("%d %s, all in the run table:", len(listed), title)
        for record in listed[:MAX_LISTED_FAILURES]:
            logger.warning("  %s: %s", record.source or record.name, record.error)
        if len(listed) > MAX_LISTED_FAILURES:
            logger.warning("  ... and %d more", len(listed) - MAX_LISTED_FAILURES)


def summarize(
    run_id: str,
    records: Mapping[int, OutputRecord],
    generated: Iterable[OutputRecord],
    *,
    not_finished: int,
    wall_s: float,
    run_table_url: str,
    gpus: float,
    guardrails: str,
    sink_reports: Iterable[str],
    gpus_per_rank: float = 1.0,
) -> Summary:
    """The `Summary` of a run: `records` is every sample's, `generated` those this run generated; a rank's
    denoising counts as `gpus_per_rank` of a GPU's time (groups that share a GPU)."""
    statuses = [record.status for record in records.values()]
    return Summary(
        run_id=run_id,
        ok=statuses.count(OK),
        failed=statuses.count(FAILED),
        blocked=statuses.count(BLOCKED),
        skipped=statuses.count(SKIPPED),
        duplicates=statuses.count(DUPLICATE),
        not_finished=not_finished,
        wall_s=wall_s,
        run_table_url=run_table_url,
        gpus=gpus,
        denoising_gpu_s=sum(_denoising_gpu_s(record) for record in generated) * gpus_per_rank,
        sink_reports=tuple(report for report in sink_reports if report),
        guardrails=guardrails,
    )


def _denoising_gpu_s(record: OutputRecord) -> float:
    metadata = record.metadata
    return metadata.get("timings_s", {}).get("sampling", 0.0) * metadata.get("world_size", 1)


def failure_message(error: BaseException) -> str:
    """One line for an exception that stopped a run, without Ray's wrapping: the exception a task or actor
    raised (`Type: message`), or the last line of Ray's own report, which names the innermost cause."""
    while isinstance(error, RayError):
        inner = error.cause if isinstance(error, RayTaskError) and error.cause is not None else error.__cause__
        if inner is None or not str(inner).strip():  # Ray Data chains a bare SystemException() to its own
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            return lines[-1] if lines else type(error).__name__
        error = inner
    if isinstance(error, StorageError | placement.PlacementError | StorageGone):
        return str(error)  # one line already
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
