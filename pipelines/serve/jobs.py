"""Asynchronous jobs (`POST /v1/jobs`, `GET /v1/jobs/{id}`): `JobBoard`, a single replica holding the job table
and the tasks that run the jobs on the GroupReplicas, first in first out.

Jobs live in the board's memory: they are lost if it restarts, their stored results are not. A job follows its
replica's events: `running` once its GPUs begin, `step` / `total_steps` (of window `chunk` / `num_chunks` for
an autoregressive spec) as rank 0 denoises, then `succeeded`
(with the stored result, or the video kept here when there is no output location) or `failed` (the error; a
video the guardrails refused is also recorded as "blocked" where an output location applies).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from cosmos_ray.core.progress import Step
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.storage import Storage
from pipelines.serve.replica import Failed, Finished, ReplicaEvent, Started, replica_events
from pipelines.serve.results import record_blocked, store_result

logger = logging.getLogger("ray.serve")

BUSY_RETRY_S = 1.0  # when ingress traffic fills the replicas' queue, the next job tries again this soon


@dataclass
class Job:
    """One `/v1/jobs` entry as the client sees it (`to_json`), plus the video when nothing stores it."""

    id: str
    sample_id: str
    status: str = "queued"  # queued -> running -> succeeded | failed
    step: int = 0  # denoising steps done by the group's rank 0, of `total_steps` (known once running)
    total_steps: int | None = None
    chunk: int = 1  # the window being denoised, of `num_chunks` (more than one: an autoregressive spec)
    num_chunks: int = 1
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    video: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "sample_id": self.sample_id,
            "status": self.status,
            "progress": self.progress,
            "step": self.step,
            "total_steps": self.total_steps,
            "chunk": self.chunk,
            "num_chunks": self.num_chunks,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }
        if self.result is not None:
            data["result"] = self.result
        if self.error is not None:
            data["error"] = self.error
        return data

    @property
    def progress(self) -> float:
        """1 once succeeded; before that the share of denoising steps done over all windows (decoding and
        storing follow)."""
        if self.status == "succeeded":
            return 1.0
        if not self.total_steps:
            return 0.0
        return Step(self.step, self.total_steps, self.chunk, self.num_chunks).fraction

    def follow(self, event: ReplicaEvent) -> None:
        """Update the job from one of its replica's events."""
        if isinstance(event, Started):
            self.status = "running"
        elif isinstance(event, Step):
            self.step, self.total_steps = event.step, event.total
            self.chunk, self.num_chunks = event.chunk, event.num_chunks


class JobBoard:
    """The job table and the tasks that run the jobs, first in first out (a single replica holds the table)."""

    def __init__(self, replicas: DeploymentHandle, output_url: str | None, storage: Storage, max_jobs: int):
        self._replicas = replicas
        self._output_url = output_url
        self._storage = storage
        self._max_jobs = max_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._dispatch = asyncio.Lock()  # FIFO: one job at a time waits for a replica to take it up
        self._tasks: set[asyncio.Task[None]] = set()  # the event loop keeps only weak references to tasks

    async def submit(self, spec: GenerationSpec, output_url: str | None) -> dict[str, Any] | None:
        """Queue a job; None when `max_jobs` jobs are already queued or running."""
        active = sum(job.status in ("queued", "running") for job in self._jobs.values())
        if active >= self._max_jobs:
            return None
        self._forget_finished(keep=self._max_jobs - 1)
        job = Job(id=uuid.uuid4().hex, sample_id=spec.sample_id)
        self._jobs[job.id] = job
        task = asyncio.get_running_loop().create_task(self._run(job, spec, output_url or self._output_url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job.to_json()

    async def get(self, job_id: str) -> dict[str, Any] | None:
        job = self._jobs.get(job_id)
        return None if job is None else job.to_json()

    async def video(self, job_id: str) -> bytes | None:
        job = self._jobs.get(job_id)
        return None if job is None else job.video

    async def _run(self, job: Job, spec: GenerationSpec, output_url: str | None) -> None:
        try:
            async for event in self._dispatched(spec):
                job.follow(event)
                if isinstance(event, Finished):
                    job.result = await self._keep(job, spec, event, output_url)
                    job.status = "succeeded"
                elif isinstance(event, Failed):
                    if event.blocked:
                        await asyncio.to_thread(record_blocked, output_url, self._storage, spec, event.reason)
                    job.status = "failed"
                    job.error = {"status": event.status, "field": event.field, "reason": event.reason}
            if job.status not in ("succeeded", "failed"):
                raise RuntimeError("the replica ended the job without a result")
        except Exception as error:  # noqa: BLE001 - the job records the failure; the board keeps running
            logger.exception("job %s failed", job.id)
            job.status = "failed"
            job.error = {"status": 500, "field": None, "reason": f"{type(error).__name__} (see the server log)"}
        finally:
            job.finished_at = time.time()

    async def _dispatched(self, spec: GenerationSpec) -> AsyncIterator[ReplicaEvent]:
        """The replica's events for `spec`. Until a replica takes the job up (its first event), hold the
        dispatch lock (first in, first out) and retry while the replicas are full."""
        async with self._dispatch:
            while True:
                events = replica_events(self._replicas, spec)
                try:
                    first = await anext(events)
                except BackPressureError:
                    await asyncio.sleep(BUSY_RETRY_S)
                    continue
                break
        yield first
        async for event in events:
            yield event

    async def _keep(self, job: Job, spec: GenerationSpec, result: Finished, output_url: str | None) -> dict[str, Any]:
        if output_url is None:
            job.video = result.mp4
            return {"sample_id": spec.sample_id, "video_url": f"/v1/jobs/{job.id}/video", "metadata": result.metadata}
        return await asyncio.to_thread(store_result, output_url, self._storage, spec, result)

    def _forget_finished(self, keep: int) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.finished_at is not None]
        for job_id in finished[: max(len(self._jobs) - keep, 0)]:
            del self._jobs[job_id]
