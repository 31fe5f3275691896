"""GPU stage: a pool of `GroupActor`s, each owning one `GPUGroup` (pipelines/group.py), one sample per call.

docs/architecture.md explains why each pool actor creates its own placement group, and the failure policy.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pyarrow as pa
import ray

from cosmos_ray.core.guardrails import Blocked
from cosmos_ray.core.progress import Step
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.spec_formats import Spec
from pipelines.batch.schemas import GENERATED_SCHEMA, with_specs
from pipelines.batch.stages.base import Stage
from pipelines.group import GPUGroup, GroupConfig, SampleError

logger = logging.getLogger(__name__)

GROUP_ACTOR_CPUS = 0.5  # the pool actor only relays specs and frames; the ranks hold the GPUs
# Ray Data's defaults restart a dead pool actor and retry its task forever (-1). A group's sample errors are
# caught and become error rows, so a pool actor dies only with its process or node: retry that a few times,
# and let a sample that keeps killing its actor fail the job instead of looping.
GROUP_ACTOR_MAX_RESTARTS = 3
GROUP_ACTOR_MAX_TASK_RETRIES = 3
# A rank worker that dies (its process or node lost) breaks the group; its sample is generated once more on the
# restarted group before it counts as failed (a sample that kills a rank every time fails on its second try).
RANK_DEATH_RETRIES = 1


def generate_stage(config: GroupConfig, placement_group_prefix: str, groups: tuple[int, int]) -> Stage:
    """`groups`: (min, max) pool actors; `placement_group_prefix`: the run's, for the groups' placement groups."""
    min_groups, max_groups = groups
    return Stage(
        "generate",
        GroupActor,
        map_batches_kwargs={
            "batch_size": 1,
            # One task in flight per actor: a sample waits in the shared queue, not behind another group's sample.
            "compute": ray.data.ActorPoolStrategy(
                min_size=min_groups, max_size=max_groups, max_tasks_in_flight_per_actor=1
            ),
            "num_cpus": GROUP_ACTOR_CPUS,
            "max_restarts": GROUP_ACTOR_MAX_RESTARTS,  # no named parameter for these two in Ray 2.60
            "max_task_retries": GROUP_ACTOR_MAX_TASK_RETRIES,
        },
        fn_constructor_kwargs={"config": config, "placement_group_prefix": placement_group_prefix},
    )


def pool_size(groups: int | tuple[int, int], samples: int) -> tuple[int, int]:
    """(min, max) GPU groups: as configured, but never more than the samples (each group loads the model)."""
    low, high = groups if isinstance(groups, tuple) else (groups, groups)
    return min(low, samples), min(high, samples)


class GroupActor:
    """GPU stage of `map_batches`: owns one `GPUGroup` and generates one sample per call (rows that the prompt
    check blocked or failed pass through)."""

    def __init__(self, config: GroupConfig, placement_group_prefix: str):
        # Named by actor id, so a restarted actor removes the placement group of its previous incarnation.
        name = f"{placement_group_prefix}{ray.get_runtime_context().get_actor_id()}"
        self.group = GPUGroup(config, name=name)
        self.model = config.engine.model  # the official model: its spec format

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = [self._generate(row, spec) for row, spec in with_specs(batch, self.model)]
        return pa.Table.from_pylist(rows, schema=GENERATED_SCHEMA)

    def _generate(self, row: dict[str, Any], spec: Spec) -> dict[str, Any]:
        started = time.monotonic()
        if row["blocked"] is not None or row["error"] is not None:
            return {**row, "frames": b"", "frames_shape": [], "fps": spec.fps, "metadata_json": "{}", "generate_s": 0.0}
        try:
            result = self._stream(spec)
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

    def _stream(self, spec: Spec) -> GenerationResult:
        """The group's result for `spec`, logging its steps; a sample whose rank worker died is run again on the
        restarted group, up to `RANK_DEATH_RETRIES` times, before its `SampleError` is raised."""
        retries = RANK_DEATH_RETRIES
        while True:
            try:
                for event in self.group.stream(spec):
                    if isinstance(event, Step):
                        _log_step(spec.name, event)
                    else:
                        result: GenerationResult = event
                return result
            except SampleError as error:
                rank_died = error.group_broken and error.cause is None  # not a rank that raised, nor a stuck one
                if not rank_died or retries == 0:
                    raise
                retries -= 1
                logger.warning("%s: %s; generating it again on the restarted group", spec.name, error)

    def __del__(self) -> None:  # Ray Data calls this when it ends the actor gracefully
        group = getattr(self, "group", None)
        if group is not None:
            group.shutdown()


def _log_step(name: str, step: Step) -> None:
    """The first and last denoising step of each window of a sample, and every fifth, at debug level (the job
    logs one line per sample)."""
    if step.step in (1, step.total) or step.step % max(1, step.total // 5) == 0:
        logger.debug("%s: %s", name, step)
