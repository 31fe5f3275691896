"""`run(BatchConfig) -> Summary`: the batch job's driver. It checks the layout, plans the manifest's samples,
starts the sinks, runs the stages over the samples to generate as an ordered list of `Stage`s, and hands each
finished sample to the monitor and the sinks; at the end it writes the run table and returns the summary."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace

import ray

from cosmos_ray.core.outputs import OK, RUN_TABLE_SCHEMA, OutputRecord, OutputStore
from cosmos_ray.core.storage import StorageError
from pipelines import placement
from pipelines.batch.config import BatchConfig, Summary, new_run_id
from pipelines.batch.plan import PendingSample, plan
from pipelines.batch.preflight import preflight
from pipelines.batch.report import StorageGone, log_failures, log_plan, summarize
from pipelines.batch.sinks import RunInfo, Sink, make_sinks
from pipelines.batch.stages.base import Stage, quiet
from pipelines.batch.stages.check import checked_samples
from pipelines.batch.stages.generate import generate_stage, pool_size
from pipelines.batch.stages.prompt import prompt_stage
from pipelines.batch.stages.write import write_stage
from pipelines.group import remove_placement_groups
from pipelines.monitor import RunMonitor

logger = logging.getLogger(__name__)


def run(config: BatchConfig) -> Summary:
    """Run the job on the connected Ray cluster and write its run table.

    Raises `placement.PlacementError` for a layout the cluster cannot hold. Ctrl-C (KeyboardInterrupt) while
    generating stops the run: the run table lists what finished, and `Summary.interrupted` is true. Once
    `config.max_storage_failures` samples in a row could not be written, the run stops the same way (the run
    table, if storage takes it) and raises `StorageGone`.
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
    sinks = make_sinks(config.sinks)
    planned = plan(checked_samples(config), store, config.group.engine.model)
    log_plan(run_id, planned)
    pending = planned.pending
    generated: dict[int, OutputRecord] = {}
    groups = (0, 0)
    reports: list[str] = []  # of the sinks that finished
    stopped: StorageGone | None = None
    with RunMonitor(run_id) as monitor:
        monitor.planned(to_generate=len(pending), statuses=[record.status for record in planned.records.values()])
        try:
            info = RunInfo(
                run_id=run_id,
                store=store,
                committed=planned.committed,
                to_generate=tuple(sample.sample_id for sample in pending),
                cpus=config.writer_cpus,
            )
            for sink in sinks:
                sink.start(info)
            if pending:
                pool = config.groups or placement.pool_size(cluster, config.group.gpus)
                groups = pool_size(pool, len(pending))
                _generate(config, run_id, pending, groups, sinks, generated, monitor)
            for sink in sinks:
                reports.append(sink.finish())
        except KeyboardInterrupt:
            logger.warning("interrupted: %d of %d samples finished", len(generated), len(pending))
        except StorageGone as error:  # the entry point prints it, as the one line of a job that stopped
            stopped = error
        reports += [sink.finish(interrupted=True) for sink in sinks[len(reports) :]]
    records = {**planned.records, **generated}
    if stopped is not None:
        _write_run_table_if_possible(store, run_id, records)
        log_failures(records)
        raise stopped
    table_url = store.write_run_table(run_id, [records[row] for row in sorted(records)])
    log_failures(records)
    return summarize(
        run_id,
        records,
        generated.values(),
        not_finished=len(pending) - len(generated),
        wall_s=time.monotonic() - started,
        run_table_url=table_url,
        gpus=groups[1] * config.group.gpus,
        guardrails=str(guardrails),
        sink_reports=reports,
        gpus_per_rank=config.group.gpus_per_rank,
    )


def _write_run_table_if_possible(store: OutputStore, run_id: str, records: dict[int, OutputRecord]) -> None:
    """The run table of a run that storage stopped: written if storage takes it now, else logged as missing."""
    try:
        url = store.write_run_table(run_id, [records[row] for row in sorted(records)])
        logger.info("run table of what finished: %s", url)
    except StorageError as error:
        logger.warning("no run table: %s", error)


def stages(config: BatchConfig, run_id: str, groups: tuple[int, int], sinks: Sequence[Sink]) -> list[Stage]:
    """The stages every sample to generate goes through, in order; the prompt stage only with guardrails."""
    prompt = (
        [prompt_stage(config.group.guardrails, config.group.engine.model)]
        if config.group.guardrails is not None
        else []
    )
    return [
        *prompt,
        generate_stage(config.group, placement_group_prefix(run_id), groups),
        write_stage(config, run_id, sinks),
    ]


def placement_group_prefix(run_id: str) -> str:
    """The names of the run's placement groups start with this."""
    return f"cosmos-ray-{run_id}-"


def _generate(
    config: BatchConfig,
    run_id: str,
    pending: list[PendingSample],
    groups: tuple[int, int],
    sinks: Sequence[Sink],
    records: dict[int, OutputRecord],
    monitor: RunMonitor,
) -> None:
    """The stages over the pending samples, once the cluster has room for a group; puts each record into
    `records` as it finishes (so they are there when Ctrl-C stops the run), shows it to `monitor` and hands
    each sample committed ok to the sinks."""
    prefix = placement_group_prefix(run_id)
    placement.wait_until_placeable(config.group.bundles, config.schedule_timeout_s, name=prefix + "first-group")
    # One row per block: the actor pool hands out blocks, so this is what spreads samples over the groups.
    samples: ray.data.Dataset = ray.data.from_items(
        [sample.to_row() for sample in pending], override_num_blocks=len(pending)
    )
    quiet(samples.context)
    for stage in stages(config, run_id, groups, sinks):
        samples = stage.apply(samples)
    monitor.generating(gpus=groups[1] * config.group.gpus)
    storage_failures = 0  # samples in a row whose outputs storage refused
    try:
        for row in samples.iter_rows():
            record = OutputRecord.from_row({name: row[name] for name in RUN_TABLE_SCHEMA.names})
            records[row["row"]] = record
            monitor.finished(record)
            if record.status == OK:
                for sink in sinks:
                    sink.add(record)
            storage_failures = storage_failures + 1 if row["storage_failed"] else 0
            if storage_failures >= config.max_storage_failures:
                raise StorageGone(storage_failures, record.error or "")
    finally:
        # Pool actors end asynchronously after the dataset is done; free their GPUs now.
        remove_placement_groups(prefix)
