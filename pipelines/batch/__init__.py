"""The batch job: a Parquet manifest of specs in, videos and their records out, on a pool of GPU groups.

    read_parquet(manifest) --> check stage (CPU tasks: spec valid? already done?) --> driver: plan
    pending rows, one per block --> [prompt stage (CPU actor, with guardrails): prompt blocked?]
                                --> generate stage: GroupActor x M (one GPUGroup each) --> frames (checked and
                                    blurred on rank 0, with guardrails) --> write stage (CPU tasks: mp4 encode,
                                    then each sink writes, the files sink last: video then meta) --> records
    driver: one log line per sample, each ok sample to the sinks, then runs/{run_id}/metadata.parquet and a
            Summary (with each sink's phrase, e.g. "4 shard(s) written")

Before any of this, `preflight` checks what would otherwise fail late (the manifest, a write under the output
root) and the driver checks that the cluster can ever hold a group. Invalid rows and failed samples become
records with the error; only a job that cannot run raises. A row whose prompt the guardrails block passes the
GPU stage untouched (no GPU time); a video they block is never written; both are recorded with status
"blocked" and the reason. Rows already done (their meta says ok and their video exists) are skipped, so
rerunning a job, or resuming a killed or interrupted one, generates exactly the missing samples.

Modules, one job each:

    config.py      BatchConfig, Summary                    schemas.py   the rows between stages, spec_of
    preflight.py   checks before Ray starts                plan.py      numbering, duplicates, prompt order
    driver.py      run: the stages as a list, the sinks    report.py    log lines, Summary, failure_message
    stages/        check, prompt, generate, write          sinks/       where finished samples go

docs/architecture.md has the reasoning behind the layout, docs/failures.md what each failure means.
"""

from cosmos_ray.core.outputs import SKIPPED
from pipelines.batch.config import BatchConfig, Summary, new_run_id
from pipelines.batch.driver import run
from pipelines.batch.preflight import preflight
from pipelines.batch.report import StorageGone, failure_message
from pipelines.batch.schemas import (
    CHECK_COLUMNS,
    CHECKED_SCHEMA,
    GENERATED_SCHEMA,
    INVALID,
    PENDING,
    PENDING_SCHEMA,
    WRITTEN_SCHEMA,
)
from pipelines.batch.sinks import SINKS, FilesSink, Sink, SinkConfig, WebDatasetSink, register_sink
from pipelines.batch.stages.check import check_rows
from pipelines.batch.stages.write import write_outputs

__all__ = [
    "CHECKED_SCHEMA",
    "CHECK_COLUMNS",
    "GENERATED_SCHEMA",
    "INVALID",
    "PENDING",
    "PENDING_SCHEMA",
    "SINKS",
    "SKIPPED",
    "WRITTEN_SCHEMA",
    "BatchConfig",
    "FilesSink",
    "Sink",
    "SinkConfig",
    "StorageGone",
    "Summary",
    "WebDatasetSink",
    "check_rows",
    "failure_message",
    "new_run_id",
    "preflight",
    "register_sink",
    "run",
    "write_outputs",
]
