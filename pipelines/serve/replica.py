"""The GPU side of the app: `GroupReplica`, one GPU group per Serve replica, and the events it streams back.

A replica runs one generation at a time on its group (the batch job's `GPUGroup`, in the replica's own
placement group) and encodes the mp4 of one while the next denoises. For each request it streams `Started`
when its GPUs begin, a `Step` after each of rank 0's denoising steps (of every window of an autoregressive
spec), then `Finished` (the mp4) or `Failed`.
A failure caused by the request itself (a `SpecError` or `MediaError` from the generator, e.g. a video too
short for its conditional frames) is a 422 with the field and reason, and so is a video the guardrails refuse
(rank 0 checks it and blurs its faces before the frames leave it); any other is a 500. What the client reads is
ours alone: library messages (a decoder's, with its temporary paths), the guardrails' match and internal errors
go to this replica's log under the request id, which the client gets too.

A request stops its generation between two denoising steps (`GPUGroup.cancel`) when it is cancelled (its HTTP
client went away, or its job was deleted) and when it runs past the time limit (`max_request_s`, from the moment
its GPUs begin: a 504); each such stop counts in the metric `cosmos_ray_serve_generations_stopped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import ray
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from ray.util.metrics import Counter

from cosmos_ray.core.guardrails import Blocked
from cosmos_ray.core.media import MediaError, UnreadableMediaError
from cosmos_ray.core.progress import Cancelled, Step
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.spec_errors import SpecError
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.core.views import encode_video
from pipelines.group import GPUGroup, GroupConfig, SampleError

logger = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class Started:
    """The replica's GPUs began this request."""


@dataclass(frozen=True)
class Finished:
    mp4: bytes  # the video (of a multiview model: its views stacked)
    metadata: dict[str, Any]
    views: dict[str, bytes] = field(default_factory=dict)  # view name -> its mp4 (cosmos_ray.core.views)


@dataclass(frozen=True)
class Failed:
    """What the client is told: 422 (with the field) for its own spec or input, 500 otherwise."""

    status: int
    field: str | None
    reason: str  # no traceback, no server internals
    blocked: bool = False  # the guardrails refused the video
    detail: str | None = None  # the server's own account (the log, a "blocked" record); never sent to the client


ReplicaEvent = Started | Step | Finished | Failed

SERVER_LOG = "see the server log under the request id"


def failure(error: SampleError, request_id: str) -> Failed:
    """The client's view of a failed generation: was it the request's spec or input, or the server? Details
    that are not the client's business are logged under `request_id`."""
    cause = error.cause
    if isinstance(cause, SpecError):
        return Failed(422, cause.field or None, cause.reason)
    if isinstance(cause, UnreadableMediaError):  # its message quotes the decoder
        logger.warning("request %s: %s", request_id, cause)
        return Failed(422, "input_path", f"cannot read input_path as an image or video ({SERVER_LOG})")
    if isinstance(cause, MediaError):  # ours: what is wrong with the input (too short, over a media limit)
        return Failed(422, "input_path", str(cause))
    if isinstance(cause, Blocked):  # the reason may quote what matched: for the log and the record only
        return Failed(422, None, f"{cause.check} blocked by the guardrails", blocked=True, detail=str(cause))
    logger.error("request %s: generation failed: %s", request_id, error)
    return Failed(500, None, f"generation failed ({SERVER_LOG})")


class _TimeLimit(Exception):
    """A generation ran past the replica's time limit (it is being stopped)."""


class GroupReplica:
    """One GPU group; generates one spec at a time and encodes its mp4 while the next one denoises."""

    def __init__(self, group_config: GroupConfig, time_limit_s: float, max_restarts: int = 3):
        # Serve created this replica's placement group; the group's rank workers fill its bundles.
        self._group = GPUGroup(group_config, placement_group=ray.util.get_current_placement_group())
        self._time_limit_s = time_limit_s
        self._max_restarts = max_restarts
        self._stopped = Counter(
            "cosmos_ray_serve_generations_stopped",
            description="Generations stopped between denoising steps: cancelled (client gone, job deleted) or "
            "past the time limit.",
            tag_keys=("why",),
        )
        self._gpus = asyncio.Lock()
        # The group's streams are iterated on this one thread, off the event loop and in request order.
        self._group_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group")

    async def generate(self, spec: Spec, request_id: str = "") -> AsyncIterator[ReplicaEvent]:
        """Stream `Started`, a `Step` per denoising step, then `Finished` or `Failed`."""
        try:
            async with self._gpus:
                yield Started()
                # closed on the way out, so a cancelled request stops its sample at once (not when collected)
                async with contextlib.aclosing(self._group_stream(spec, request_id)) as events:
                    async for event in events:
                        if isinstance(event, Step):
                            yield event
                        else:
                            result = event
            video = await asyncio.to_thread(encode_video, result.frames, result.fps, result.metadata)
        except SampleError as error:
            yield failure(error, request_id)
            return
        except _TimeLimit:
            reason = f"the generation ran past this server's time limit ({self._time_limit_s:g} s) and was stopped"
            yield Failed(504, None, reason)
            return
        except Exception:  # noqa: BLE001 - reported to the client without internals, logged here
            logger.exception("request %s: generation of %s failed", request_id, spec.sample_id)
            yield Failed(500, None, f"generation failed ({SERVER_LOG})")
            return
        yield Finished(video.mp4, result.metadata, video.views)

    async def _group_stream(self, spec: Spec, request_id: str) -> AsyncGenerator[Step | GenerationResult]:
        """`GPUGroup.stream(spec)`, each item fetched on the group thread, within the time limit.

        A request cancelled midway (its client left, its job was deleted) or past its time limit stops its
        sample at the next denoising step (`GPUGroup.cancel`); the rest of its stream is run out on the group
        thread, so the group ends that sample (and notices a broken rank) before the next request's sample
        starts there.
        """
        key = uuid.uuid4().hex
        stream = self._group.stream(spec, key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._time_limit_s
        fetch: Future[Any] | None = None  # the item being fetched on the group thread
        ended, why = False, "cancelled"
        try:
            while True:
                fetch = self._group_thread.submit(next, stream, None)
                try:
                    item = await asyncio.wait_for(asyncio.wrap_future(fetch), max(deadline - loop.time(), 0))
                except TimeoutError:
                    why = "time_limit"
                    raise _TimeLimit() from None
                except SampleError:
                    ended = True  # the stream raised: it is over
                    raise
                if item is None:
                    break
                yield item
            ended = True
        finally:
            if not ended:
                self._group.cancel(key)
                self._group_thread.submit(self._run_out, fetch, stream, spec, request_id, why)

    def _run_out(self, fetch: Future[Any] | None, stream: Iterator[Any], spec: Spec, request_id: str, why: str) -> None:
        """End the sample of an abandoned stream, from the item being fetched when it was abandoned (done by now:
        this runs on the same thread); its outcome has no one to go to but the log and the metric."""
        try:
            if fetch is not None and not fetch.cancelled():
                fetch.result()  # raises the sample's error if that fetch ended it
            for _ in stream:
                pass
        except SampleError as error:
            if isinstance(error.cause, Cancelled):
                self._stopped.inc(tags={"why": why})
                logger.info(
                    "request %s: generation of %s stopped (%s) %s", request_id, spec.sample_id, why, error.cause
                )
            else:
                logger.warning("request %s: generation of %s (abandoned) failed: %s", request_id, spec.sample_id, error)
        else:
            logger.info(
                "request %s: generation of %s (abandoned) ended before it could stop", request_id, spec.sample_id
            )

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


def replica_events(replicas: DeploymentHandle, spec: Spec, request_id: str) -> AsyncIterator[ReplicaEvent]:
    """Send `spec` to a GroupReplica: its events, as it streams them. Iterating raises `BackPressureError`
    when every replica is busy and the queue is full. Cancelling the iterating task (or `close()`) cancels the
    request on the replica, which stops its generation."""
    return cast(AsyncIterator[ReplicaEvent], replicas.options(stream=True).generate.remote(spec, request_id))


def cancel_request(events: AsyncIterator[ReplicaEvent]) -> None:
    """Cancel the replica's request behind a `replica_events` stream: its generation stops between two steps."""
    cast(DeploymentResponseGenerator, events).cancel()


async def outcome(events: AsyncIterator[ReplicaEvent]) -> Finished | Failed:
    """The final event of a request. Left early (the caller was cancelled: its HTTP client went away, or it ran
    out of time), it cancels the request on the replica."""
    try:
        async for event in events:
            if isinstance(event, (Finished, Failed)):
                return event
    except asyncio.CancelledError:
        cancel_request(events)
        raise
    return Failed(500, None, "the replica ended the request without a result")
