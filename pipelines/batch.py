"""The batch job: a Parquet manifest of specs in, videos and their records out, on a pool of GPU groups.

    read_parquet(manifest) --> check_rows (CPU tasks: spec valid? already done?) --> driver: plan
    pending rows, one per block --> [PromptCheck (CPU actor, with guardrails): prompt blocked?]
                                --> GroupActor x M (one GPUGroup each) --> frames (checked and blurred on
                                    rank 0, with guardrails) --> write_outputs (CPU tasks: mp4 encode, video
                                    then meta) --> records
    driver: one log line per sample, then runs/{run_id}/metadata.parquet and a Summary
    with sharded output, also: driver packs done samples --> write_shard (CPU tasks: tar, then index file)

Before any of this, `preflight` checks what would otherwise fail late (the manifest, a write under the output
root) and the driver checks that the cluster can ever hold a group. Invalid rows and failed samples become
records with the error; only a job that cannot run raises. A row whose prompt the guardrails block passes the
GPU stage untouched (no GPU time); a video they block is never written; both are recorded with status
"blocked" and the reason. Rows already done (their meta says ok and their
video exists) are skipped, so rerunning a job, or resuming a killed or interrupted one, generates exactly the
missing samples. docs/architecture.md has the reasoning behind the layout, docs/failures.md what each failure
means.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import ray
from ray.exceptions import RayError, RayTaskError

from cosmos_ray.core.guardrails import (
    Blocked,
    Guardrails,
    GuardrailSetting,
    check_installed,
    check_prompt,
)
from cosmos_ray.core.limits import SpecLimits
from cosmos_ray.core.manifest import check_manifest, spec_from_row
from cosmos_ray.core.media import write_mp4
from cosmos_ray.core.outputs import BLOCKED, DUPLICATE, FAILED, OK, RUN_TABLE_SCHEMA, SKIPPED, OutputRecord, OutputStore
from cosmos_ray.core.progress import Step
from cosmos_ray.core.registry import OfficialModel, get_model
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.shards import ShardConfig
from cosmos_ray.core.spec import SpecError
from cosmos_ray.core.storage import Storage, StorageError
from pipelines import placement
from pipelines.group import GPUGroup, GroupConfig, SampleError, remove_placement_groups
from pipelines.monitor import RunMonitor
from pipelines.sharding import Sharder

logger = logging.getLogger(__name__)

PENDING, INVALID = "pending", "invalid"  # the check stage's verdicts, besides SKIPPED (already done)

GROUP_ACTOR_CPUS = 0.5  # the pool actor only relays specs and frames; the ranks hold the GPUs
# Ray Data's defaults restart a dead pool actor and retry its task forever (-1). A group's sample errors are
# caught and become error rows, so a pool actor dies only with its process or node: retry that a few times,
# and let a sample that keeps killing its actor fail the job instead of looping.
GROUP_ACTOR_MAX_RESTARTS = 3
GROUP_ACTOR_MAX_TASK_RETRIES = 3
PROMPT_CHECK_CPUS = 1.0  # the prompt check actor (Blocklist and Qwen3Guard-Gen-0.6B on the CPU)
CHECK_BATCH_SIZE = 64  # manifest rows per check task (each costs one read of a meta file per generation)
CHECK_COLUMNS = ["spec_json", "name", "source"]  # the manifest columns the check stage reads
MAX_LISTED_FAILURES = 20  # invalid and duplicate rows logged before generation, failures listed at the end

CHECKED_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("name", pa.string()),
        ("spec_json", pa.string()),
        ("sample_id", pa.string()),
        ("status", pa.string()),  # PENDING | SKIPPED | INVALID
        ("error", pa.string()),
    ]
)

GENERATED_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),  # position in the manifest
        ("source", pa.string()),
        ("spec_json", pa.string()),
        ("error", pa.string()),  # null when generated
        ("blocked", pa.string()),  # why the guardrails refused the prompt or the video; null otherwise
        ("frames", pa.large_binary()),  # uint8 (T, H, W, 3) as raw bytes; empty on error
        ("frames_shape", pa.list_(pa.int64())),
        ("fps", pa.int64()),
        ("metadata_json", pa.string()),
        ("generate_s", pa.float64()),  # wall time of the group call
    ]
)

WRITTEN_SCHEMA = RUN_TABLE_SCHEMA.insert(0, pa.field("row", pa.int64()))

PENDING_SCHEMA = pa.schema(  # a row on its way to the GPU stage
    [
        ("row", pa.int64()),
        ("source", pa.string()),
        ("spec_json", pa.string()),
        ("blocked", pa.string()),  # set by the prompt check
        ("error", pa.string()),  # set when the prompt check could not run
    ]
)


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
    writer_cpus: float = 1.0  # CPUs per mp4-encode-and-upload task (and per shard-writing task)
    schedule_timeout_s: float = 1800.0  # how long to wait for the GPUs of the first group (e.g. a node to come)
    shards: ShardConfig | None = None  # also write finished samples into WebDataset shards (docs/outputs.md)
    guardrails: GuardrailSetting | None = None  # None: the default for the model (`guardrail_setting`)

    def __post_init__(self) -> None:
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
    gpus: int  # GPUs the run's groups held (largest pool size x GPUs per group); 0 if nothing was generated
    denoising_gpu_s: float  # sum over generated samples of denoising time x GPUs of its group
    duplicates: int = 0  # rows whose sample an earlier row of the manifest already has
    blocked: int = 0  # samples whose prompt or video the guardrails refused
    guardrails: str = ""  # whether the run had guardrails, and why (`GuardrailSetting`)
    not_finished: int = 0  # samples left to generate when the run was interrupted (Ctrl-C)
    shards_written: int = 0  # WebDataset shards this run wrote (with sharded output)

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
        shards = f", {self.shards_written} shard(s) written" if self.shards_written else ""
        return (
            f"run {self.run_id}{interrupted}: {self.ok} ok, {self.failed} failed, {self.blocked} blocked, "
            f"{self.skipped} skipped{duplicates}{shards} in {self.wall_s:.1f}s ({self.videos_per_hour:.1f} "
            f"videos/hour, {self.gpus} GPUs denoising {self.denoising_share:.0%} of the time); {self.guardrails}; "
            f"table: {self.run_table_url}"
        )


def preflight(config: BatchConfig) -> int:
    """Check, without Ray and in seconds, what would otherwise fail after the models load: the manifest is a
    readable cosmos-ray manifest, files can be written under the output root (and the embedding cache), and the
    guardrails, when on, are installed. Returns the manifest's row count; raises `StorageError` or ValueError
    with a one-line message."""
    check_installed(config.guardrail_setting)
    rows = check_manifest(config.manifest, storage=config.storage)
    config.storage.check_writable(config.output)
    if config.group.engine.embedding_cache:
        config.storage.check_writable(config.group.engine.embedding_cache)
    return rows


def run(config: BatchConfig) -> Summary:
    """Run the job on the connected Ray cluster and write its run table.

    Raises `placement.PlacementError` for a layout the cluster cannot hold. Ctrl-C (KeyboardInterrupt) while
    generating stops the run: the run table lists what finished, and `Summary.interrupted` is true.
    """
    started = time.monotonic()
    run_id = config.run_id or new_run_id()
    preflight(config)
    guardrails = config.guardrail_setting
    logger.info("run %s: %s", run_id, guardrails)
    config = replace(config, group=replace(config.group, guardrails=guardrails.checks))  # rank 0: the videos
    cluster = placement.cluster_gpus()
    placement.check_layout(cluster, config.group.gpus_per_group)
    store = OutputStore(config.output, config.storage)
    records, pending = _plan(_check_manifest(config), store)
    _log_plan(run_id, records, pending)
    generated: dict[int, OutputRecord] = {}
    groups = (0, 0)
    sharder = None
    with RunMonitor(run_id) as monitor:
        monitor.planned(to_generate=len(pending), statuses=[record.status for record in records.values()])
        try:
            if config.shards is not None:
                sharder = _start_sharding(config.shards, store, records, pending, config.writer_cpus)
            if pending:
                pool = config.groups or placement.pool_size(cluster, config.group.gpus_per_group)
                groups = _pool_size(pool, len(pending))
                _generate(config, run_id, pending, groups, generated, monitor, sharder)
            if sharder is not None:
                sharder.finish()
        except KeyboardInterrupt:
            logger.warning("interrupted: %d of %d samples finished", len(generated), len(pending))
    records.update(generated)
    table_url = store.write_run_table(run_id, [records[row] for row in sorted(records)])
    _log_failures(records)
    statuses = [record.status for record in records.values()]
    return Summary(
        run_id=run_id,
        ok=statuses.count(OK),
        failed=statuses.count(FAILED),
        blocked=statuses.count(BLOCKED),
        skipped=statuses.count(SKIPPED),
        duplicates=statuses.count(DUPLICATE),
        not_finished=len(pending) - len(generated),
        wall_s=time.monotonic() - started,
        run_table_url=table_url,
        gpus=groups[1] * config.group.gpus_per_group,
        denoising_gpu_s=sum(_denoising_gpu_s(record) for record in generated.values()),
        shards_written=sharder.written if sharder is not None else 0,
        guardrails=str(guardrails),
    )


def _start_sharding(
    shards: ShardConfig,
    store: OutputStore,
    records: dict[int, OutputRecord],
    pending: list[dict[str, Any]],
    cpus: float,
) -> Sharder:
    """The run's sharder (`cpus` per shard-writing task), given the samples that earlier runs committed (in
    manifest order)."""
    ordered = [records[row] for row in sorted(records)]
    committed = [r.sample_id for r in ordered if r.status == SKIPPED and r.sample_id is not None]  # all skipped
    run_samples = {*committed, *(item["sample_id"] for item in pending)}
    sharder = Sharder(store, shards, run_samples=run_samples, cpus=cpus)
    sharder.add_committed(committed)
    return sharder


def _log_plan(run_id: str, records: dict[int, OutputRecord], pending: list[dict[str, Any]]) -> None:
    """The run's counts, then each invalid row (up to `MAX_LISTED_FAILURES`) and each duplicate row."""
    by_status = {status: [r for r in records.values() if r.status == status] for status in (SKIPPED, DUPLICATE, FAILED)}
    logger.info(
        "run %s: %d samples, %d to generate, %d already done, %d duplicate, %d invalid",
        run_id,
        len(records) + len(pending),
        len(pending),
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


def _log_failures(records: dict[int, OutputRecord]) -> None:
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


def failure_message(error: BaseException) -> str:
    """One line for an exception that stopped a run, without Ray's wrapping: the exception a task or actor
    raised (`Type: message`), or the last line of Ray's own report, which names the innermost cause."""
    while isinstance(error, RayError):
        inner = error.cause if isinstance(error, RayTaskError) and error.cause is not None else error.__cause__
        if inner is None or not str(inner).strip():  # Ray Data chains a bare SystemException() to its own
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            return lines[-1] if lines else type(error).__name__
        error = inner
    if isinstance(error, StorageError | placement.PlacementError):
        return str(error)  # one line already
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _denoising_gpu_s(record: OutputRecord) -> float:
    metadata = record.metadata
    return metadata.get("timings_s", {}).get("sampling", 0.0) * metadata.get("world_size", 1)


def new_run_id() -> str:
    """A sortable, unique run id: `20250101T120000Z-1a2b3c`."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _check_manifest(config: BatchConfig) -> Iterator[dict[str, Any]]:
    """Every sample of the manifest, in manifest order and numbered, with its spec checked and its resume
    status: one per generation of each valid row, one for each invalid row.

    Ray Data reads the manifest (the driver never holds it whole) and checks its rows in parallel CPU tasks,
    one read of a meta file per generation. This dataset alone preserves order (`read_parquet` gives it its
    own copy of the DataContext; the GPU stage stays unordered), so `limit` keeps the first rows and the
    samples arrive in manifest order, generations in seed order: the driver numbers them as they come, and the
    number is the sample's position in the run table.
    """
    filesystem, path = config.storage.arrow_filesystem(config.manifest)
    manifest = ray.data.read_parquet(path, filesystem=filesystem)  # `preflight` checked its columns
    _quiet(manifest.context)
    manifest.context.execution_options.preserve_order = True
    if config.limit is not None:
        manifest = manifest.limit(config.limit)
    checked = manifest.select_columns(CHECK_COLUMNS).map_batches(
        check_rows,  # type: ignore[arg-type]  # fn_kwargs supplies its keyword-only arguments
        batch_size=CHECK_BATCH_SIZE,
        batch_format="pyarrow",
        fn_kwargs={
            "output": config.output,
            "storage": config.storage,
            "limits": config.limits,
            "model": config.group.engine.model,
            "num_generations": config.num_generations,
        },
    )
    for position, row in enumerate(checked.iter_rows()):
        yield {"row": position, **row}


def _quiet(context: ray.data.DataContext) -> None:
    """No Ray Data progress bars or plans on the console: the job logs one line per sample instead (Ray Data's
    own log file under the session's logs/ray-data keeps everything)."""
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def check_rows(
    batch: pa.Table,
    *,
    output: str,
    storage: Storage,
    limits: SpecLimits,
    model: str,
    num_generations: int | None = None,
) -> pa.Table:
    """Check stage: each manifest row -> the canonical spec of each of its generations, PENDING or SKIPPED
    (done); or one INVALID row (not a valid spec, over `limits`, or one the official `model` cannot
    generate). `num_generations` replaces every spec's own."""
    store = OutputStore(output, storage)
    official = get_model(model)
    rows = [
        checked for row in batch.to_pylist() for checked in _check_row(row, store, limits, official, num_generations)
    ]
    return pa.Table.from_pylist(rows, schema=CHECKED_SCHEMA)


def _check_row(
    row: dict[str, Any], store: OutputStore, limits: SpecLimits, model: OfficialModel, num_generations: int | None
) -> list[dict[str, Any]]:
    try:
        spec = spec_from_row(row, limits, num_generations=num_generations)
        model.check_spec(spec)
    except SpecError as error:
        return [{**row, "sample_id": None, "status": INVALID, "error": str(error)}]
    return [
        {
            "source": row["source"],
            "name": generation.name,
            "spec_json": generation.to_json(),
            "sample_id": generation.sample_id,
            "status": SKIPPED if store.is_done(generation.sample_id) else PENDING,
            "error": None,
        }
        for generation in spec.generations()
    ]


def _plan(checked: Iterable[dict[str, Any]], store: OutputStore) -> tuple[dict[int, OutputRecord], list[dict]]:
    """Records of the samples that need no GPU (invalid, done, repeated), and the samples to generate.

    A sample id that appears twice is generated once; later rows are recorded as duplicates of the first.
    The samples to generate are ordered by prompt, so a group meets a prompt again while its embedding is
    still cached. The driver holds one entry per sample (a generation of a row, or an invalid row): a
    run-table record (sample id, name, status, source, spec JSON, error) for a sample that needs no GPU, or
    (number, source, spec JSON, sample id) for one to generate, plus the source of each distinct sample id; the
    manifest's other columns are never collected.
    """
    records: dict[int, OutputRecord] = {}
    pending: list[dict[str, Any]] = []
    first_source: dict[str, str] = {}  # sample id -> the source of the first row that has it
    for row in checked:
        if row["status"] == INVALID:
            records[row["row"]] = OutputRecord.failed(
                row["error"], name=row["name"] or "", source=row["source"], spec_json=row["spec_json"]
            )
        elif row["sample_id"] in first_source:
            first = first_source[row["sample_id"]]
            records[row["row"]] = store.duplicate(spec_from_row(row), source=row["source"], first_source=first)
        elif row["status"] == SKIPPED:
            first_source[row["sample_id"]] = row["source"]
            records[row["row"]] = store.skipped(spec_from_row(row), source=row["source"])
        else:
            first_source[row["sample_id"]] = row["source"]
            pending.append(
                {
                    "row": row["row"],
                    "source": row["source"],
                    "spec_json": row["spec_json"],
                    "sample_id": row["sample_id"],
                }
            )
    pending.sort(key=lambda item: _prompt_key(item["spec_json"]))
    return records, pending


def _prompt_key(spec_json: str) -> tuple[str, str]:
    spec = json.loads(spec_json)
    return spec["prompt"], spec["negative_prompt"]


def _generate(
    config: BatchConfig,
    run_id: str,
    pending: list[dict[str, Any]],
    groups: tuple[int, int],
    records: dict[int, OutputRecord],
    monitor: RunMonitor,
    sharder: Sharder | None,
) -> None:
    """GPU stage and writer stage over the pending rows, once the cluster has room for a group; puts each
    record into `records` as it finishes (so they are there when Ctrl-C stops the run), shows it to `monitor`
    and hands each sample that is done to `sharder`."""
    placement_group_prefix = f"cosmos-ray-{run_id}-"
    placement.wait_until_placeable(
        config.group.bundles, config.schedule_timeout_s, name=placement_group_prefix + "first-group"
    )
    # One row per block: the actor pool hands out blocks, so this is what spreads samples over the groups.
    samples: ray.data.Dataset = ray.data.from_items(
        [{**row, "blocked": None, "error": None} for row in pending], override_num_blocks=len(pending)
    )
    _quiet(samples.context)
    if config.group.guardrails is not None:  # a stage of its own: a blocked prompt never waits for a GPU
        samples = samples.map_batches(
            PromptCheck,
            fn_constructor_kwargs={"guardrails": config.group.guardrails},
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=PROMPT_CHECK_CPUS,
        )
    min_groups, max_groups = groups
    generated = samples.map_batches(
        GroupActor,
        fn_constructor_kwargs={"config": config.group, "placement_group_prefix": placement_group_prefix},
        batch_size=1,
        batch_format="pyarrow",
        # One task in flight per actor: a sample waits in the shared queue, not behind another group's sample.
        compute=ray.data.ActorPoolStrategy(min_size=min_groups, max_size=max_groups, max_tasks_in_flight_per_actor=1),
        num_cpus=GROUP_ACTOR_CPUS,
        max_restarts=GROUP_ACTOR_MAX_RESTARTS,  # no named parameter for these two in Ray 2.60
        max_task_retries=GROUP_ACTOR_MAX_TASK_RETRIES,
    )
    written = generated.map_batches(
        write_outputs,  # type: ignore[arg-type]  # fn_kwargs supplies its keyword-only arguments
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=config.writer_cpus,
        fn_kwargs={"output": config.output, "storage": config.storage, "run_id": run_id},
    )
    monitor.generating(gpus=max_groups * config.group.gpus_per_group)
    try:
        for row in written.iter_rows():
            record = OutputRecord.from_row({name: row[name] for name in RUN_TABLE_SCHEMA.names})
            records[row["row"]] = record
            monitor.finished(record)
            if sharder is not None and record.status == OK:
                sharder.add(row["sample_id"], record.metadata["video_bytes"])
    finally:
        # Pool actors end asynchronously after the dataset is done; free their GPUs now.
        remove_placement_groups(placement_group_prefix)


def _pool_size(groups: int | tuple[int, int], samples: int) -> tuple[int, int]:
    """(min, max) GPU groups: as configured, but never more than the samples (each group loads the model)."""
    low, high = groups if isinstance(groups, tuple) else (groups, groups)
    return min(low, samples), min(high, samples)


class PromptCheck:
    """Prompt stage of `map_batches` (CPU, with guardrails): marks the rows whose prompt is refused.

    A check that cannot run fails its row (the `error` column) rather than letting the prompt through.
    """

    def __init__(self, guardrails: Guardrails):
        guardrails.load("prompt", "cpu")  # a missing model stops the job here, not at every row
        self.guardrails = guardrails

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self._check(row) for row in batch.to_pylist()], schema=PENDING_SCHEMA)

    def _check(self, row: dict[str, Any]) -> dict[str, Any]:
        try:
            check_prompt(self.guardrails, spec_from_row(row).prompt)
        except Blocked as blocked:
            return {**row, "blocked": str(blocked)}
        except Exception as error:  # noqa: BLE001 - the sample fails; the guardrails never wave it through
            return {**row, "error": f"the prompt guardrails failed: {type(error).__name__}: {error}"}
        return row


class GroupActor:
    """GPU stage of `map_batches`: owns one `GPUGroup` and generates one sample per call (rows that the prompt
    check blocked or failed pass through)."""

    def __init__(self, config: GroupConfig, placement_group_prefix: str):
        # Named by actor id, so a restarted actor removes the placement group of its previous incarnation.
        name = f"{placement_group_prefix}{ray.get_runtime_context().get_actor_id()}"
        self.group = GPUGroup(config, name=name)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self._generate(row) for row in batch.to_pylist()], schema=GENERATED_SCHEMA)

    def _generate(self, row: dict[str, Any]) -> dict[str, Any]:
        spec = spec_from_row(row)
        started = time.monotonic()
        if row["blocked"] is not None or row["error"] is not None:
            return {**row, "frames": b"", "frames_shape": [], "fps": spec.fps, "metadata_json": "{}", "generate_s": 0.0}
        try:
            for event in self.group.stream(spec):
                if isinstance(event, Step):
                    _log_step(spec.name, event)
                else:
                    result: GenerationResult = event
        except SampleError as error:
            blocked = error.cause if isinstance(error.cause, Blocked) else None
            return {
                **row,
                "error": None if blocked else str(error),
                "blocked": str(blocked) if blocked else None,
                "frames": b"",
                "frames_shape": [],
                "fps": spec.fps,
                "metadata_json": "{}",
                "generate_s": time.monotonic() - started,
            }
        return {
            **row,
            "error": None,
            "frames": result.frames.tobytes(),
            "frames_shape": list(result.frames.shape),
            "fps": result.fps,
            "metadata_json": json.dumps(result.metadata),
            "generate_s": time.monotonic() - started,
        }

    def __del__(self) -> None:  # Ray Data calls this when it ends the actor gracefully
        group = getattr(self, "group", None)
        if group is not None:
            group.shutdown()


def _log_step(name: str, step: Step) -> None:
    """The first and last denoising step of each window of a sample, and every fifth, at debug level (the job
    logs one line per sample)."""
    if step.step in (1, step.total) or step.step % max(1, step.total // 5) == 0:
        logger.debug("%s: %s", name, step)


def write_outputs(batch: pa.Table, *, output: str, storage: Storage, run_id: str) -> pa.Table:
    """Writer stage (CPU): encode each generated sample to mp4 and commit it, or record its failure."""
    store = OutputStore(output, storage)
    rows = [{"row": row["row"], **_write_one(store, row, run_id).to_row()} for row in batch.to_pylist()]
    return pa.Table.from_pylist(rows, schema=WRITTEN_SCHEMA)


def _write_one(store: OutputStore, row: dict[str, Any], run_id: str) -> OutputRecord:
    spec = spec_from_row(row)
    metadata = {**json.loads(row["metadata_json"]), "run_id": run_id}
    timings = metadata.setdefault("timings_s", {})  # the generator's stages, plus the pipeline's two
    timings["group_call"] = round(row["generate_s"], 4)
    if row["blocked"] is not None:
        return store.write_blocked(spec, row["blocked"], metadata=metadata, source=row["source"])
    if row["error"] is not None:
        return store.write_failure(spec, row["error"], metadata=metadata, source=row["source"])
    try:
        frames = np.frombuffer(row["frames"], dtype=np.uint8).reshape(row["frames_shape"])
        started = time.monotonic()
        mp4 = write_mp4(frames, row["fps"])
        timings["mp4_encode"] = round(time.monotonic() - started, 4)
        metadata["video_bytes"] = len(mp4)
        return store.write_ok(spec, mp4, metadata, source=row["source"])
    except Exception as error:  # noqa: BLE001 - encoding or storage failed: this sample fails (no meta, so a rerun retries it)
        message = f"writing the outputs failed: {type(error).__name__}: {error}"
        return store.failure(spec, message, metadata=metadata, source=row["source"])
