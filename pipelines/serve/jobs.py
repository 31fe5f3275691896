"""Asynchronous jobs (`POST /v1/jobs`, `GET` and `DELETE /v1/jobs/{id}`): `JobBoard`, a single replica holding the
job table and the tasks that run the jobs on the GroupReplicas, first in first out.

Each job belongs to the token that submitted it (its `owner`, `auth.BearerAuth.check`): another token sees no such
job. Deleting a queued or running job cancels it (its generation stops between two denoising steps; status
`cancelled`); deleting a finished one forgets it and its kept video. An owner may have at most its quota of
jobs queued or running (`max_active_per_token`, counted with its requests in flight at the ingress).

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
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.core.storage import Storage
from pipelines.serve.replica import SERVER_LOG, Failed, Finished, ReplicaEvent, Started, cancel_request, replica_events
from pipelines.serve.results import record_blocked, store_result

logger = logging.getLogger("ray.serve")

BUSY_RETRY_S = 1.0  # when ingress traffic fills the replicas' queue, the next job tries again this soon


@dataclass
class Job:
    """One `/v1/jobs` entry as the client sees it (`to_json`), plus the video when nothing stores it."""

    id: str
    sample_id: str
    owner: str  # the token that submitted it (a digest prefix); never shown
    request_id: str  # of the submitting request: the server log's lines about the job carry it
    status: str = "queued"  # queued -> running -> succeeded | failed | cancelled
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
            data["error"] = {**self.error, "request_id": self.request_id}
        return data

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

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
        self._tasks: dict[str, asyncio.Task[None]] = {}  # of the active jobs (the loop keeps only weak references)

    async def submit(
        self, spec: Spec, output_url: str | None, owner: str, request_id: str, quota: int | None
    ) -> dict[str, Any] | str:
        """Queue a job: its JSON; or "full" when `max_jobs` jobs are already queued or running, or "quota" when
        `owner` already has `quota` jobs queued or running (None: no quota)."""
        if sum(job.active for job in self._jobs.values()) >= self._max_jobs:
            return "full"
        if quota is not None and await self.active(owner) >= quota:
            return "quota"
        self._forget_finished(keep=self._max_jobs - 1)
        job = Job(id=uuid.uuid4().hex, sample_id=spec.sample_id, owner=owner, request_id=request_id)
        self._jobs[job.id] = job
        task = asyncio.get_running_loop().create_task(self._run(job, spec, output_url or self._output_url))
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))
        return job.to_json()

    async def get(self, job_id: str, owner: str) -> dict[str, Any] | None:
        job = self._owned(job_id, owner)
        return None if job is None else job.to_json()

    async def video(self, job_id: str, owner: str) -> bytes | None:
        job = self._owned(job_id, owner)
        return None if job is None else job.video

    async def active(self, owner: str) -> int:
        """Jobs of `owner` queued or running."""
        return sum(job.active and job.owner == owner for job in self._jobs.values())

    async def delete(self, job_id: str, owner: str) -> dict[str, Any] | None:
        """Cancel an active job (it stays listed as `cancelled`) or forget a finished one: its JSON; None if
        `owner` has no such job."""
        job = self._owned(job_id, owner)
        if job is None:
            return None
        if job.active:
            job.status = "cancelled"  # before the task ends: no event can change it any more
            self._tasks[job.id].cancel()
            logger.info("request %s: job %s cancelled by its owner", job.request_id, job.id)
        else:
            del self._jobs[job.id]
        return job.to_json()

    def _owned(self, job_id: str, owner: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    async def _run(self, job: Job, spec: Spec, output_url: str | None) -> None:
        try:
            async for event in self._dispatched(spec, job.request_id):
                if job.status == "cancelled":
                    break
                job.follow(event)
                if isinstance(event, Finished):
                    job.result = await self._keep(job, spec, event, output_url)
                    job.status = "succeeded"
                elif isinstance(event, Failed):
                    if event.blocked:
                        await asyncio.to_thread(
                            record_blocked, output_url, self._storage, spec, event.detail or event.reason
                        )
                    job.status = "failed"
                    job.error = {"status": event.status, "field": event.field, "reason": event.reason}
            if job.status not in ("succeeded", "failed", "cancelled"):
                raise RuntimeError("the replica ended the job without a result")
        except asyncio.CancelledError:  # `delete`
            job.status = "cancelled"
            raise
        except Exception:  # noqa: BLE001 - the job records the failure; the board keeps running
            logger.exception("request %s: job %s failed", job.request_id, job.id)
            job.status = "failed"
            job.error = {"status": 500, "field": None, "reason": f"the job failed ({SERVER_LOG})"}
        finally:
            job.finished_at = time.time()

    async def _dispatched(self, spec: Spec, request_id: str) -> AsyncIterator[ReplicaEvent]:
        """The replica's events for `spec`. Until a replica takes the job up (its first event), hold the
        dispatch lock (first in, first out) and retry while the replicas are full. Left early (the job was
        cancelled), it cancels the replica's request, which stops the generation."""
        async with self._dispatch:
            while True:
                events = replica_events(self._replicas, spec, request_id)
                try:
                    first = await anext(events)
                except BackPressureError:
                    await asyncio.sleep(BUSY_RETRY_S)
                    continue
                except asyncio.CancelledError:
                    cancel_request(events)
                    raise
                break
        ended = False
        try:
            yield first
            async for event in events:
                yield event
            ended = True
        finally:
            if not ended:
                cancel_request(events)

    async def _keep(self, job: Job, spec: Spec, result: Finished, output_url: str | None) -> dict[str, Any]:
        if output_url is None:
            job.video = result.mp4
            return {"sample_id": spec.sample_id, "video_url": f"/v1/jobs/{job.id}/video", "metadata": result.metadata}
        return await asyncio.to_thread(store_result, output_url, self._storage, spec, result)

    def _forget_finished(self, keep: int) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.finished_at is not None]
        for job_id in finished[: max(len(self._jobs) - keep, 0)]:
            del self._jobs[job_id]
