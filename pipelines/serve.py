"""Ray Serve application: an HTTP API for ad hoc generation on the batch pipeline's GPU groups.

    serve run pipelines.serve:app preset=tiny gpus_per_replica=1
    serve deploy jobs/serve_config.yaml

Three deployments:

    ApiIngress      FastAPI on CPU: request size, spec validation, input/output allow-lists, limits,
                    storage of results, HTTP status codes. Never touches a GPU.
    GroupReplica    one GPU group per replica: the replica's placement group (N x {GPU, CPU}, STRICT_PACK)
                    holds the rank workers of `pipelines.group.GPUGroup`, the same code the batch job runs.
    JobBoard        a single replica holding the table of asynchronous jobs (`/v1/jobs`) and their tasks.

Capacity: each replica runs one generation at a time and accepts one more that waits for its GPUs (its
mp4 encoding then overlaps the next denoising). Beyond that, up to `max_queued_requests` requests wait in the
ingress; further ones get 503 with Retry-After. Async jobs wait in the JobBoard instead and are dispatched
first in, first out.

A replica streams the denoising steps of its group's rank 0 to its caller, so a job's `progress` is the share
of steps done (of all windows: an autoregressive job also reports its `chunk` of `num_chunks`). A generation
that fails because of the request itself (a `SpecError` or `MediaError` from the generator, e.g. a video too
short for its conditional frames) is a 422 with the field and reason; any other failure is a 500.

Guardrails (`guardrails=true|false`; default on with a checkpoint, off with a random-weight preset): the ingress
checks each prompt before it waits for a GPU, and a replica's rank 0 checks each video and blurs its faces; a
refused prompt or video is a 422 with the reason (field "prompt" for a prompt), never stored; with an output
location its meta file records it as "blocked". `/healthz` states the setting and why.
"""

# No `from __future__ import annotations`: Serve's class-based FastAPI views need real annotations.
import asyncio
import json
import logging
import os
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import ray
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from cosmos_ray import storage
from cosmos_ray.guardrails import (
    Blocked,
    Guardrails,
    GuardrailSetting,
    check_installed,
    check_prompt,
    guardrail_setting,
)
from cosmos_ray.media import MediaError, write_mp4
from cosmos_ray.outputs import OK, OutputRecord, OutputStore
from cosmos_ray.spec import GenerationSpec, SpecError
from pipelines.group import GPUGroup, GroupConfig, SampleError, Step

if TYPE_CHECKING:
    from cosmos_ray.generator import GenerationResult

logger = logging.getLogger("ray.serve")

TRAINED_PIXELS_2B = 704 * 1280


class ServeArgs(BaseModel):
    """Arguments of `serve run pipelines.serve:app key=value ...` and of `args:` in a Serve config file."""

    model_config = {"extra": "forbid"}

    preset: str = Field("tiny", description="model preset; ignored when checkpoint_dir is set")
    checkpoint_dir: str | None = Field(None, description="folder with the official checkpoint files")
    dtype: str | None = Field(None, description="torch dtype name; default: the generator's")
    gpus_per_replica: int = Field(1, ge=1, description="GPUs in each replica's group (context parallel)")
    min_replicas: int = Field(1, ge=0, description="autoscaling lower bound (0 scales to zero)")
    max_replicas: int = Field(1, ge=1, description="autoscaling upper bound")
    max_queued_requests: int = Field(4, ge=0, description="requests waiting for a replica before 503")
    retry_after_s: int = Field(30, ge=1, description="Retry-After sent with 503")
    output_url: str | None = Field(None, description="where results are stored (always an allowed output)")
    allowed_output_prefixes: list[str] = Field([], description="further URL prefixes `?output=` may use")
    allowed_input_prefixes: list[str] = Field([], description="URL prefixes `input_path` may read from")
    storage_options: dict[str, Any] = Field({}, description="fsspec options for inputs and outputs")
    max_request_bytes: int = Field(64 * 1024, ge=1024, description="largest accepted request body")
    max_num_frames: int = Field(
        93, ge=1, description="largest `cosmos_ray_num_frames`; a spec without it gets the model's native 93 frames"
    )
    max_pixels: int = Field(TRAINED_PIXELS_2B, ge=1, description="largest height x width of `resolution`")
    max_num_steps: int = Field(50, ge=1)
    max_jobs: int = Field(64, ge=1, description="async jobs queued or running at once; finished ones kept")
    guardrails: bool | None = Field(
        None,
        description="NVIDIA's safety checks on prompts and videos; default: on with a checkpoint (as the official "
        "inference; the weights' license), off with a random-weight preset (README: Guardrails)",
    )


# ---------------------------------------------------------------------------------------------------------
# Request policy: what a client may ask for. Plain functions, so they are testable without Ray.


class ApiError(Exception):
    """An error response: HTTP status, the offending field (if any) and the reason the client sees."""

    def __init__(self, status: int, field: str | None, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.field = field
        self.reason = reason
        self.headers = headers or {}


@dataclass(frozen=True)
class RequestPolicy:
    """Operator limits applied to every request before it reaches a GPU."""

    allowed_input_prefixes: tuple[str, ...] = ()
    allowed_output_prefixes: tuple[str, ...] = ()
    max_request_bytes: int = 64 * 1024
    max_num_frames: int = 93  # bounds cosmos_ray_num_frames (the native length is the model's, not the client's)
    max_pixels: int = TRAINED_PIXELS_2B
    max_num_steps: int = 50

    @classmethod
    def from_args(cls, args: ServeArgs) -> "RequestPolicy":
        outputs = ([args.output_url] if args.output_url else []) + args.allowed_output_prefixes
        return cls(
            allowed_input_prefixes=tuple(args.allowed_input_prefixes),
            allowed_output_prefixes=tuple(outputs),
            max_request_bytes=args.max_request_bytes,
            max_num_frames=args.max_num_frames,
            max_pixels=args.max_pixels,
            max_num_steps=args.max_num_steps,
        )


def parse_spec(body: bytes, policy: RequestPolicy) -> GenerationSpec:
    """The request body as a validated spec within the operator's limits; raises `ApiError`."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, None, f"body is not valid JSON: {error}") from None
    if isinstance(data, dict) and "prompt_path" in data:
        raise ApiError(422, "prompt_path", "is not accepted over HTTP (it reads a server file); send 'prompt'")
    try:
        spec = GenerationSpec.from_dict(data, source="request")
    except SpecError as error:
        raise ApiError(422, error.field or None, error.reason) from None
    check_limits(spec, policy)
    if spec.input_path is not None:
        check_allowed_url(spec.input_path, policy.allowed_input_prefixes, "input_path")
    return spec


def check_limits(spec: GenerationSpec, policy: RequestPolicy) -> None:
    """Frames, resolution and steps within what the operator allows per request."""
    if spec.cosmos_ray_num_frames is not None and spec.cosmos_ray_num_frames > policy.max_num_frames:
        raise ApiError(
            422,
            "cosmos_ray_num_frames",
            f"must be at most {policy.max_num_frames} on this server, got {spec.cosmos_ray_num_frames}",
        )
    if spec.height_width is not None and spec.height_width[0] * spec.height_width[1] > policy.max_pixels:
        raise ApiError(
            422,
            "resolution",
            f"must have at most {policy.max_pixels} pixels (height x width) on this server, got {spec.resolution}",
        )
    if spec.num_steps > policy.max_num_steps:
        raise ApiError(422, "num_steps", f"must be at most {policy.max_num_steps} on this server, got {spec.num_steps}")


def check_allowed_url(url: str, allowed_prefixes: tuple[str, ...], field: str) -> None:
    """Refuse (403) any URL outside the operator's allowed prefixes, and any that could escape one.

    Nothing is allowed by default: no local files of the server, no http(s), no object store. A URL is allowed
    when it lies under an allowed prefix at a "/" boundary; `..` segments, fsspec URL chaining (`::`) and
    control characters are refused outright; local paths are compared after resolving symlinks.
    """
    decoded = unquote(url)
    if any(ord(char) < 32 for char in decoded):
        raise ApiError(403, field, "must not contain control characters")
    if "::" in decoded:
        raise ApiError(403, field, "must be a single URL (fsspec '::' chaining is not allowed)")
    if ".." in re.split(r"[/\\]", decoded):
        raise ApiError(403, field, "must not contain '..' path segments")
    target = _canonical_url(url)
    if not any(target.startswith(_canonical_prefix(prefix)) for prefix in allowed_prefixes):
        raise ApiError(
            403,
            field,
            f"{url!r} is not under a location this server may access (the operator configures the allowed prefixes)",
        )


def _canonical_url(url: str) -> str:
    """Local paths and file:// URLs as file:// of their real path; other URLs with a lower-case scheme."""
    scheme = storage.url_scheme(url)
    if scheme in (None, "file"):
        path = url[len("file://") :] if scheme == "file" else url
        return "file://" + os.path.realpath(os.path.expanduser(path))
    return scheme + url[len(scheme) :]


def _canonical_prefix(prefix: str) -> str:
    return _canonical_url(prefix).rstrip("/") + "/"


# ---------------------------------------------------------------------------------------------------------
# What a GroupReplica streams back for one request.


@dataclass(frozen=True)
class Started:
    """The replica's GPUs began this request."""


@dataclass(frozen=True)
class Finished:
    mp4: bytes
    metadata: dict


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

    async def generate(self, spec: GenerationSpec) -> AsyncIterator[ReplicaEvent]:
        """Stream `Started`, a `Step` per denoising step, then `Finished` or `Failed`."""
        try:
            async with self._gpus:
                yield Started()
                async for event in self._steps_then_result(spec):
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

    async def _steps_then_result(self, spec: GenerationSpec) -> AsyncIterator["Step | GenerationResult"]:
        """Run `spec` on the group in a thread; yield each `Step` as rank 0 reports it, then the result."""
        loop = asyncio.get_running_loop()
        steps: asyncio.Queue[Step | None] = asyncio.Queue()

        def report(step: Step) -> None:  # called in the generating thread
            loop.call_soon_threadsafe(steps.put_nowait, step)

        generation = asyncio.ensure_future(asyncio.to_thread(self._group.generate, spec, report))
        generation.add_done_callback(lambda _: steps.put_nowait(None))  # queued after every step reported
        while (step := await steps.get()) is not None:
            yield step
        yield await generation  # raises the group's SampleError

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


async def run_on_replica(
    replicas: DeploymentHandle,
    spec: GenerationSpec,
    on_event: Callable[[ReplicaEvent], None] = lambda event: None,
) -> Finished | Failed:
    """Send `spec` to a GroupReplica and follow its events; raises `BackPressureError` when over capacity."""
    stream = replicas.options(stream=True).generate.remote(spec)
    async for event in stream:
        on_event(event)
        if isinstance(event, (Finished, Failed)):
            return event
    return Failed(500, None, "the replica ended the request without a result")


# ---------------------------------------------------------------------------------------------------------
# Storing results.


def store_result(output_url: str, storage_options: dict, spec: GenerationSpec, result: Finished) -> dict:
    """Write the video and then its record (the commit marker) as the batch job does; the response JSON."""
    store = OutputStore(output_url, storage_options=storage_options)
    return _result_json(store, store.write_ok(spec, result.mp4, result.metadata, source="serve"), cached=False)


def record_blocked(output_url: str | None, storage_options: dict, spec: GenerationSpec, reason: str) -> None:
    """Log a request the guardrails refused and, with an output location, record it there (no video)."""
    logger.warning("sample %s blocked: %s", spec.sample_id, reason)
    if output_url is not None:
        OutputStore(output_url, storage_options=storage_options).write_blocked(spec, reason, source="serve")


def stored_result(output_url: str, storage_options: dict, spec: GenerationSpec) -> dict | None:
    """The response JSON of an identical earlier request (same sample id) that is stored, if any."""
    store = OutputStore(output_url, storage_options=storage_options)
    record = store.read_record(spec.sample_id)
    return _result_json(store, record, cached=True) if record is not None and record.status == OK else None


def _result_json(store: OutputStore, record: OutputRecord, cached: bool) -> dict:
    return {
        "sample_id": record.sample_id,
        "video_url": record.video_url,
        "metadata_url": store.meta_url(record.sample_id),
        "metadata": record.metadata,
        "cached": cached,
    }


# ---------------------------------------------------------------------------------------------------------
# Asynchronous jobs.


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
    result: dict | None = None
    error: dict | None = None
    video: bytes | None = None

    def to_json(self) -> dict:
        data = {
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


class JobBoard:
    """The job table and the tasks that run the jobs, first in first out (a single replica holds the table).

    Jobs live in this replica's memory: they are lost if it restarts, their stored results are not.
    """

    def __init__(self, replicas: DeploymentHandle, output_url: str | None, storage_options: dict, max_jobs: int):
        self._replicas = replicas
        self._output_url = output_url
        self._storage_options = storage_options
        self._max_jobs = max_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._dispatch = asyncio.Lock()  # FIFO: one job at a time waits for a replica to accept it
        self._tasks: set[asyncio.Task] = set()  # the event loop keeps only weak references to tasks

    async def submit(self, spec: GenerationSpec, output_url: str | None) -> dict | None:
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

    async def get(self, job_id: str) -> dict | None:
        job = self._jobs.get(job_id)
        return None if job is None else job.to_json()

    async def video(self, job_id: str) -> bytes | None:
        job = self._jobs.get(job_id)
        return None if job is None else job.video

    async def _run(self, job: Job, spec: GenerationSpec, output_url: str | None) -> None:
        accepted = asyncio.Event()

        def follow(event: ReplicaEvent) -> None:
            accepted.set()
            if isinstance(event, Started):
                job.status = "running"
            elif isinstance(event, Step):
                job.step, job.total_steps = event.step, event.total
                job.chunk, job.num_chunks = event.chunk, event.num_chunks

        try:
            outcome = await self._dispatched(spec, follow, accepted)
            if isinstance(outcome, Finished):
                job.result = await self._keep(job, spec, outcome, output_url)
                job.status = "succeeded"
            else:
                if outcome.blocked:
                    await asyncio.to_thread(record_blocked, output_url, self._storage_options, spec, outcome.reason)
                job.status = "failed"
                job.error = {"status": outcome.status, "field": outcome.field, "reason": outcome.reason}
        except Exception as error:  # noqa: BLE001 - the job records the failure; the board keeps running
            logger.exception("job %s failed", job.id)
            job.status = "failed"
            job.error = {"status": 500, "field": None, "reason": f"{type(error).__name__} (see the server log)"}
        finally:
            job.finished_at = time.time()

    async def _dispatched(self, spec: GenerationSpec, follow: Callable, accepted: asyncio.Event) -> Finished | Failed:
        """Run on a replica once it accepts the job; until then hold the dispatch lock (FIFO) and retry."""
        async with self._dispatch:
            while True:
                run = asyncio.ensure_future(run_on_replica(self._replicas, spec, follow))
                accepted_wait = asyncio.ensure_future(accepted.wait())
                await asyncio.wait({run, accepted_wait}, return_when=asyncio.FIRST_COMPLETED)
                accepted_wait.cancel()
                if run.done() and isinstance(run.exception(), BackPressureError):
                    await asyncio.sleep(1.0)  # ingress traffic filled the queue; try again shortly
                    continue
                break
        return await run

    async def _keep(self, job: Job, spec: GenerationSpec, result: Finished, output_url: str | None) -> dict:
        if output_url is None:
            job.video = result.mp4
            return {"sample_id": spec.sample_id, "video_url": f"/v1/jobs/{job.id}/video", "metadata": result.metadata}
        return await asyncio.to_thread(store_result, output_url, self._storage_options, spec, result)

    def _forget_finished(self, keep: int) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.finished_at is not None]
        for job_id in finished[: max(len(self._jobs) - keep, 0)]:
            del self._jobs[job_id]


# ---------------------------------------------------------------------------------------------------------
# HTTP.

api = FastAPI(
    title="cosmos-ray",
    description="Cosmos-Predict2.5 video generation. Request bodies are official inference JSON specs.",
    version="1",
)

_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "description": "one sample of the official inference JSON"},
                "example": {
                    "inference_type": "text2world",
                    "name": "robot",
                    "prompt": "A robot arm stacks cubes.",
                    "guidance": 7,
                    "seed": 0,
                },
            }
        },
    }
}


def _error(status: int, field: str | None, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "field": field, "reason": reason}}, status, headers=headers)


@api.exception_handler(ApiError)
async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return _error(error.status, error.field, error.reason, error.headers)


@api.exception_handler(RequestValidationError)
async def _invalid_parameters(request: Request, error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0]
    return _error(422, ".".join(str(part) for part in first["loc"]), first["msg"])


@api.exception_handler(Exception)
async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("request %s %s failed", request.method, request.url.path)
    return _error(500, None, "internal server error (see the server log)")


@serve.ingress(api)  # at import time, so every process that imports this module gets the same routes
class ApiIngress:
    """The HTTP front: validates and polices requests, forwards them, stores and returns results."""

    def __init__(
        self, replicas: DeploymentHandle, jobs: DeploymentHandle, args: ServeArgs, guardrails: GuardrailSetting
    ):
        self._replicas = replicas
        self._jobs = jobs
        self._guardrails = guardrails
        if guardrails.checks is not None:
            guardrails.checks.load("prompt", "cpu")  # a missing model fails the deployment, not each request
        self._policy = RequestPolicy.from_args(args)
        self._output_url = args.output_url
        self._storage_options = args.storage_options
        self._busy = {"Retry-After": str(args.retry_after_s)}

    @api.post(
        "/v1/generate",
        openapi_extra=_SPEC_BODY,
        responses={200: {"content": {"video/mp4": {}, "application/json": {}}}},
    )
    async def generate(self, request: Request, output: str | None = None) -> Response:
        """Generate one video. Returns the mp4, or JSON with its stored URL when an output location applies."""
        spec = parse_spec(await self._body(request), self._policy)
        output_url = self._output_location(output)
        await self._check_prompt(spec, output_url)
        if output_url is not None:
            cached = await asyncio.to_thread(stored_result, output_url, self._storage_options, spec)
            if cached is not None:
                return JSONResponse(cached)
        await self._check_input_exists(spec)
        try:
            outcome = await run_on_replica(self._replicas, spec)
        except BackPressureError:
            raise ApiError(503, None, "all GPU groups are busy; retry later", self._busy) from None
        if isinstance(outcome, Failed):
            if outcome.blocked:
                await asyncio.to_thread(record_blocked, output_url, self._storage_options, spec, outcome.reason)
            raise ApiError(outcome.status, outcome.field, outcome.reason)
        if output_url is None:
            return Response(
                outcome.mp4,
                media_type="video/mp4",
                headers={
                    "X-Sample-Id": spec.sample_id,
                    "Content-Disposition": f'inline; filename="{spec.sample_id}.mp4"',
                },
            )
        stored = await asyncio.to_thread(store_result, output_url, self._storage_options, spec, outcome)
        return JSONResponse(stored)

    @api.post("/v1/jobs", status_code=202, openapi_extra=_SPEC_BODY)
    async def submit_job(self, request: Request, output: str | None = None) -> JSONResponse:
        """Queue a generation; poll `GET /v1/jobs/{id}` for status, progress and the result URL."""
        spec = parse_spec(await self._body(request), self._policy)
        output_url = self._output_location(output)
        await self._check_prompt(spec, output_url)
        await self._check_input_exists(spec)
        job = await self._jobs.submit.remote(spec, output_url)
        if job is None:
            raise ApiError(503, None, "the job queue is full; retry later", self._busy)
        return JSONResponse(job, 202, headers={"Location": f"/v1/jobs/{job['id']}"})

    @api.get("/v1/jobs/{job_id}")
    async def job_status(self, job_id: str) -> JSONResponse:
        """Status (queued, running, succeeded, failed), progress in [0, 1] (denoising `step` of `total_steps`
        of window `chunk` of `num_chunks` while running), and the result or the error (status, field, reason)."""
        job = await self._jobs.get.remote(job_id)
        if job is None:
            raise ApiError(404, "job_id", f"no job {job_id!r} (unknown, or finished long ago)")
        return JSONResponse(job)

    @api.get("/v1/jobs/{job_id}/video", responses={200: {"content": {"video/mp4": {}}}})
    async def job_video(self, job_id: str) -> Response:
        """The video of a finished job that had no output location."""
        video = await self._jobs.video.remote(job_id)
        if video is None:
            raise ApiError(404, "job_id", f"no video kept for job {job_id!r}")
        return Response(video, media_type="video/mp4")

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        """200 while the application's deployments are healthy (Serve restarts failed replicas)."""
        status = serve.status().applications[serve.get_replica_context().app_name]
        deployments = {name: info.status.value for name, info in status.deployments.items()}
        healthy = all(info.status in ("HEALTHY", "UPSCALING", "DOWNSCALING") for info in status.deployments.values())
        return JSONResponse(
            {
                "status": "ok" if healthy else "degraded",
                "deployments": deployments,
                "guardrails": str(self._guardrails),
            },
            200 if healthy else 503,
        )

    async def _body(self, request: Request) -> bytes:
        """The request body, refusing (413) anything larger than the configured limit without reading it all."""
        limit = self._policy.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, None, f"request body exceeds {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, None, f"request body exceeds {limit} bytes")
        return bytes(body)

    def _output_location(self, requested: str | None) -> str | None:
        if requested is None:
            return self._output_url
        check_allowed_url(requested, self._policy.allowed_output_prefixes, "output")
        return requested

    async def _check_prompt(self, spec: GenerationSpec, output_url: str | None) -> None:
        """Refuse (422, field "prompt") a prompt the guardrails block, before it waits for GPUs."""
        if self._guardrails.checks is None:
            return
        try:
            await asyncio.to_thread(check_prompt, self._guardrails.checks, spec.prompt)
        except Blocked as blocked:
            await asyncio.to_thread(record_blocked, output_url, self._storage_options, spec, str(blocked))
            raise ApiError(422, "prompt", str(blocked)) from None

    async def _check_input_exists(self, spec: GenerationSpec) -> None:
        """Refuse (422) a missing input before it waits for GPUs."""
        if spec.input_path is None:
            return
        try:
            found = await asyncio.to_thread(storage.exists, spec.input_path, self._storage_options)
        except OSError as error:
            raise ApiError(422, "input_path", f"cannot be checked: {type(error).__name__}: {error}") from None
        if not found:
            raise ApiError(422, "input_path", f"{spec.input_path!r} does not exist")


# ---------------------------------------------------------------------------------------------------------
# The application.


def build_app(args: ServeArgs, checks: Guardrails | None = None) -> serve.Application:
    """Bind the three deployments from `args` (Serve validates `key=value` arguments against ServeArgs).
    `checks`: the guardrails to run when they are on (default: the official ones)."""
    if args.min_replicas > args.max_replicas:
        raise ValueError(f"min_replicas ({args.min_replicas}) exceeds max_replicas ({args.max_replicas})")
    guardrails = guardrail_setting(args.guardrails, args.checkpoint_dir or args.preset, checks)
    check_installed(guardrails)
    logger.info("cosmos-ray app: %s", guardrails)
    group_config = GroupConfig(
        gpus_per_group=args.gpus_per_replica,
        source=args.checkpoint_dir or args.preset,
        dtype=args.dtype,
        storage_options=args.storage_options,
        guardrails=guardrails.checks,  # each replica's rank 0 checks its videos
    )
    replicas = (
        serve.deployment(GroupReplica)
        .options(
            # The replica actor takes no resources itself; its group's rank workers fill the bundles.
            ray_actor_options={"num_cpus": 0},
            placement_group_bundles=group_config.bundles,
            placement_group_strategy="STRICT_PACK",
            autoscaling_config={
                "min_replicas": args.min_replicas,
                "initial_replicas": max(args.min_replicas, 1),
                "max_replicas": args.max_replicas,
                "target_ongoing_requests": 1,
                "upscale_delay_s": 5,
                "downscale_delay_s": 300,  # loading a model takes a while; don't drop a replica on a short lull
            },
            max_ongoing_requests=2,  # one generating, one waiting for the GPUs
            max_queued_requests=args.max_queued_requests,
            health_check_period_s=30,
            health_check_timeout_s=60,
            graceful_shutdown_timeout_s=600,  # let a running generation finish on scale-down
        )
        .bind(group_config)
    )
    jobs = (
        serve.deployment(JobBoard)
        .options(
            num_replicas=1,
            ray_actor_options={"num_cpus": 0},
            max_ongoing_requests=1000,
        )
        .bind(replicas, args.output_url, args.storage_options, args.max_jobs)
    )
    ingress = serve.deployment(ApiIngress).options(
        num_replicas=1,
        ray_actor_options={"num_cpus": 0.5},
        max_ongoing_requests=1000,
    )
    return ingress.bind(replicas, jobs, args, guardrails)


def app(args: ServeArgs) -> serve.Application:
    """The builder `serve run pipelines.serve:app key=value ...` calls (Serve wants exactly one parameter)."""
    return build_app(args)
