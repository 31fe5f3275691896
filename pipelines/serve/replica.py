"""The GPU side of the app: `GroupReplica`, one GPU group per Serve replica, and the events it streams back.

A replica runs one generation at a time on its group (the batch job's `GPUGroup`, in the replica's own
placement group) and encodes the mp4 of one while the next denoises. For each request it streams `Started`
when its GPUs begin, a `Step` after each of rank 0's denoising steps (of every window of an autoregressive
spec), then `Finished` (the mp4) or `Failed`.
A failure caused by the request itself (a `SpecError` or `MediaError` from the generator, e.g. a video too
short for its conditional frames) is a 422 with the field and reason, and so is a video the guardrails refuse
(rank 0 checks it and blurs its faces before the frames leave it); any other is a 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import ray
from ray.serve.handle import DeploymentHandle

from cosmos_ray.core.guardrails import Blocked
from cosmos_ray.core.media import MediaError, write_mp4
from cosmos_ray.core.progress import Step
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.spec import GenerationSpec, SpecError
from pipelines.group import GPUGroup, GroupConfig, SampleError

logger = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class Started:
    """The replica's GPUs began this request."""


@dataclass(frozen=True)
class Finished:
    mp4: bytes
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """What the client is told: 422 (with the field) for its own spec or input, 500 otherwise."""

    status: int
    field: str | None
    reason: str  # no traceback, no server internals
    blocked: bool = False  # the guardrails refused the video


ReplicaEvent = Started | Step | Finished | Failed


def failure(error: SampleError) -> Failed:
    """The client's view of a failed generation: was it the request's spec or input, or the server?"""
    if isinstance(error.cause, SpecError):
        return Failed(422, error.cause.field or None, error.cause.reason)
    if isinstance(error.cause, MediaError):
        return Failed(422, "input_path", str(error.cause))
    if isinstance(error.cause, Blocked):
        return Failed(422, None, str(error.cause), blocked=True)
    return Failed(500, None, f"generation failed: {error}")  # already "Type: message", without Ray's traceback


class GroupReplica:
    """One GPU group; generates one spec at a time and encodes its mp4 while the next one denoises."""

    def __init__(self, group_config: GroupConfig, max_restarts: int = 3):
        # Serve created this replica's placement group; the group's rank workers fill its bundles.
        self._group = GPUGroup(group_config, placement_group=ray.util.get_current_placement_group())
        self._max_restarts = max_restarts
        self._gpus = asyncio.Lock()
        # The group's streams are iterated on this one thread, off the event loop and in request order.
        self._group_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group")

    async def generate(self, spec: GenerationSpec) -> AsyncIterator[ReplicaEvent]:
        """Stream `Started`, a `Step` per denoising step, then `Finished` or `Failed`."""
        try:
            async with self._gpus:
                yield Started()
                async for event in self._group_stream(spec):
                    if isinstance(event, Step):
                        yield event
                    else:
                        result = event
            mp4 = await asyncio.to_thread(write_mp4, result.frames, result.fps)
        except SampleError as error:
            yield failure(error)
            return
        except Exception as error:  # noqa: BLE001 - reported to the client without internals, logged here
            logger.exception("generation of %s failed", spec.sample_id)
            yield Failed(500, None, f"generation failed ({type(error).__name__}); see the server log")
            return
        yield Finished(mp4, result.metadata)

    async def _group_stream(self, spec: GenerationSpec) -> AsyncIterator[Step | GenerationResult]:
        """`GPUGroup.stream(spec)`, each item fetched on the group thread.

        A request cancelled midway (its client left) does not stop the ranks: the rest of its stream is run
        out on the group thread, so the group finishes that sample (and notices a broken rank) before the
        next request's sample starts there.
        """
        stream = self._group.stream(spec)
        loop = asyncio.get_running_loop()
        finished = False
        try:
            while (item := await loop.run_in_executor(self._group_thread, next, stream, None)) is not None:
                yield item
            finished = True
        finally:
            if not finished:
                self._group_thread.submit(_run_out, stream, spec)

    def check_health(self) -> None:
        """Called by Serve every `health_check_period_s`; raising replaces the replica, group and all.

        The group restarts its workers by itself after a broken sample; a group that keeps breaking is
        likely on a bad node, so it gets a fresh placement group (possibly elsewhere) instead.
        """
        if self._group.restarts > self._max_restarts:
            raise RuntimeError(f"GPU group restarted {self._group.restarts} times")

    def __del__(self) -> None:
        if hasattr(self, "_group"):  # absent when the group failed to start
            self._group.shutdown()  # kills the rank workers; Serve removes the placement group


def _run_out(stream: Iterator[Any], spec: GenerationSpec) -> None:
    """Finish the sample of an abandoned stream; its outcome has no one to go to but the log."""
    try:
        for _ in stream:
            pass
    except SampleError as error:
        logger.warning("generation of %s (its request was cancelled) failed: %s", spec.sample_id, error)


def replica_events(replicas: DeploymentHandle, spec: GenerationSpec) -> AsyncIterator[ReplicaEvent]:
    """Send `spec` to a GroupReplica: its events, as it streams them. Iterating raises `BackPressureError`
    when every replica is busy and the queue is full."""
    return cast(AsyncIterator[ReplicaEvent], replicas.options(stream=True).generate.remote(spec))


async def outcome(events: AsyncIterator[ReplicaEvent]) -> Finished | Failed:
    """The final event of a request."""
    async for event in events:
        if isinstance(event, (Finished, Failed)):
            return event
    return Failed(500, None, "the replica ended the request without a result")
