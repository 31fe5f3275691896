"""The HTTP front: `ApiIngress`, FastAPI on CPU. Checks the bearer token, the body size and the spec, applies the
allow-lists and limits (the cost included), checks the prompt with the guardrails (when on) before it waits for a
GPU, forwards the spec to a GroupReplica (or queues it on the JobBoard, as the token's job), stores and returns
results, and maps every outcome to an HTTP status. Never touches a GPU, never imports torch (the guardrail package
loads its prompt models on CPU).

Every response carries Serve's `X-Request-ID`; an error's JSON repeats it as `request_id`, and the server log's
lines about the request carry it, so a client's generic reason ("see the server log") leads an operator to the
details. A client that goes away cancels its request, which stops its generation between two steps.
"""

# No `from __future__ import annotations`: Serve's class-based FastAPI views need real annotations.
import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from cosmos_ray.core.guardrails import Blocked, GuardrailSetting, check_prompt
from cosmos_ray.core.registry import DEFAULT_MODEL
from cosmos_ray.core.spec_formats import Spec, spec_class
from cosmos_ray.core.storage import Storage
from pipelines.serve.args import ServeArgs
from pipelines.serve.auth import BearerAuth, require_auth_or_loopback
from pipelines.serve.policy import ApiError, RequestPolicy, check_allowed_url, parse_spec
from pipelines.serve.replica import SERVER_LOG, Failed, outcome, replica_events
from pipelines.serve.results import record_blocked, store_result, stored_result

logger = logging.getLogger("ray.serve")

api = FastAPI(
    title="cosmos-ray",
    description="Cosmos-Predict2.5 video generation. Request bodies are official inference JSON specs.",
    version="1",
)


def spec_body(model: str) -> dict:
    """The OpenAPI request body of a deployment of official model `model`: its spec format's schema (shown only:
    `parse_spec` reads the body, with our statuses) and an example every format accepts."""
    example = {"inference_type": "text2world", "name": "robot", "prompt": "A robot arm stacks cubes.", "seed": 0}
    schema = spec_class(model).model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema, "example": example}}}}


# The routes that read a spec share this dict; `ApiIngress.__init__` fills it with the schema of the deployment's
# model (`document_model`; one model per deployment) before FastAPI builds the OpenAPI page, on its first request.
_SPEC_BODY = spec_body(DEFAULT_MODEL)


def document_model(model: str) -> None:
    """Show the spec format of official model `model` as the request body of the routes that read a spec."""
    _SPEC_BODY.update(spec_body(model))
    api.openapi_schema = None  # FastAPI builds it again, with that schema


REQUEST_ID_HEADER = "x-request-id"  # Serve's proxy sets it on every request and response


def request_id(request: Request) -> str:
    return request.headers.get(REQUEST_ID_HEADER, "")


def _error(
    request: Request, status: int, field: str | None, reason: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"status": status, "field": field, "reason": reason, "request_id": request_id(request)}
    return JSONResponse({"error": body}, status, headers=headers)


@api.exception_handler(ApiError)
async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return _error(request, error.status, error.field, error.reason, error.headers)


@api.exception_handler(RequestValidationError)
async def _invalid_parameters(request: Request, error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0]
    return _error(request, 422, ".".join(str(part) for part in first["loc"]), first["msg"])


@api.exception_handler(Exception)
async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("request %s: %s %s failed", request_id(request), request.method, request.url.path)
    return _error(request, 500, None, f"internal server error ({SERVER_LOG})")


def _http_host() -> str:
    """Where Serve's HTTP proxies listen (its `http_options.host`; read through a private accessor, as Serve has
    no public one)."""
    client = serve.context._get_global_client()
    assert client is not None  # inside a replica
    return str(client.http_config.host)


@serve.ingress(api)  # at import time, so every process that imports this module gets the same routes
class ApiIngress:
    """The HTTP front: validates and polices requests, forwards them, stores and returns results."""

    def __init__(
        self,
        replicas: DeploymentHandle,
        jobs: DeploymentHandle,
        args: ServeArgs,
        storage: Storage,
        guardrails: GuardrailSetting,
    ):
        self._replicas = replicas
        self._jobs = jobs
        self._guardrails = guardrails
        if guardrails.checks is not None:
            guardrails.checks.load("prompt", "cpu")  # a missing model fails the deployment, not each request
        self._auth = BearerAuth.from_sources(args.api_tokens_file)
        host = _http_host()
        require_auth_or_loopback(self._auth, host, args.allow_unauthenticated)  # else the deployment fails
        self._quota = args.max_active_per_token
        self._in_flight: Counter[str] = Counter()  # /v1/generate requests per owner
        self._policy = RequestPolicy.from_args(args)
        document_model(args.model)
        self._output_url = args.output_url
        self._storage = storage
        self._busy = {"Retry-After": str(args.retry_after_s)}
        if not self._auth.enabled:
            logger.warning(
                "the API accepts requests without a token on %s (no COSMOS_RAY_API_TOKENS, no api_tokens_file)", host
            )

    @api.post(
        "/v1/generate",
        openapi_extra=_SPEC_BODY,
        responses={200: {"content": {"video/mp4": {}, "application/json": {}}}},
    )
    async def generate(self, request: Request, output: str | None = None) -> Response:
        """Generate one video. Returns the mp4, or JSON with its stored URL when an output location applies."""
        owner = self._auth.check(request.headers.get("authorization"))
        spec = parse_spec(await self._body(request), self._policy)
        output_url = self._output_location(output)
        await self._check_prompt(spec, output_url)
        if output_url is not None:
            guarded = self._guardrails.checks is not None
            cached = await asyncio.to_thread(stored_result, output_url, self._storage, spec, guarded)
            if cached is not None:
                return JSONResponse(cached)
        await self._check_input_exists(spec, request)
        async with self._admitted(owner):
            try:  # cancelled when the client goes away: `outcome` then cancels the generation
                result = await outcome(replica_events(self._replicas, spec, request_id(request)))
            except BackPressureError:
                raise ApiError(503, None, "all GPU groups are busy; retry later", self._busy) from None
        if isinstance(result, Failed):
            if result.blocked:
                reason = result.detail or result.reason
                await asyncio.to_thread(record_blocked, output_url, self._storage, spec, reason)
            raise ApiError(result.status, result.field, result.reason)
        if output_url is None:
            return Response(
                result.mp4,
                media_type="video/mp4",
                headers={
                    "X-Sample-Id": spec.sample_id,
                    "Content-Disposition": f'inline; filename="{spec.sample_id}.mp4"',
                },
            )
        stored = await asyncio.to_thread(store_result, output_url, self._storage, spec, result)
        return JSONResponse(stored)

    @api.post("/v1/jobs", status_code=202, openapi_extra=_SPEC_BODY)
    async def submit_job(self, request: Request, output: str | None = None) -> JSONResponse:
        """Queue a generation; poll `GET /v1/jobs/{id}` for status, progress and the result URL."""
        owner = self._auth.check(request.headers.get("authorization"))
        spec = parse_spec(await self._body(request), self._policy)
        output_url = self._output_location(output)
        await self._check_prompt(spec, output_url)
        await self._check_input_exists(spec, request)
        quota = None if self._quota is None else self._quota - self._in_flight[owner]
        job = await self._jobs.submit.remote(spec, output_url, owner, request_id(request), quota)
        if job == "quota":
            raise self._over_quota()
        if job == "full":
            raise ApiError(503, None, "the job queue is full; retry later", self._busy)
        return JSONResponse(job, 202, headers={"Location": f"/v1/jobs/{job['id']}"})

    @api.get("/v1/jobs/{job_id}")
    async def job_status(self, request: Request, job_id: str) -> JSONResponse:
        """Status (queued, running, succeeded, failed, cancelled), progress in [0, 1] (denoising `step` of
        `total_steps` of window `chunk` of `num_chunks` while running), and the result or the error (status,
        field, reason, request_id). Only the token that submitted a job sees it."""
        owner = self._auth.check(request.headers.get("authorization"))
        job = await self._jobs.get.remote(job_id, owner)
        if job is None:
            raise ApiError(404, "job_id", f"no job {job_id!r} (unknown, another token's, or finished long ago)")
        return JSONResponse(job)

    @api.delete("/v1/jobs/{job_id}")
    async def delete_job(self, request: Request, job_id: str) -> JSONResponse:
        """Cancel a queued or running job (its generation stops after the current denoising step; it stays
        listed as `cancelled`), or forget a finished one and its kept video. Returns the job."""
        owner = self._auth.check(request.headers.get("authorization"))
        job = await self._jobs.delete.remote(job_id, owner)
        if job is None:
            raise ApiError(404, "job_id", f"no job {job_id!r} (unknown, another token's, or finished long ago)")
        return JSONResponse(job)

    @api.get("/v1/jobs/{job_id}/video", responses={200: {"content": {"video/mp4": {}}}})
    async def job_video(self, request: Request, job_id: str) -> Response:
        """The video of a finished job that had no output location."""
        owner = self._auth.check(request.headers.get("authorization"))
        video = await self._jobs.video.remote(job_id, owner)
        if video is None:
            raise ApiError(404, "job_id", f"no video kept for job {job_id!r}")
        return Response(video, media_type="video/mp4")

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        """200 while the application's deployments are healthy (Serve restarts failed replicas), with the guardrail
        setting and why; never needs a token."""
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

    @contextlib.asynccontextmanager
    async def _admitted(self, owner: str) -> AsyncIterator[None]:
        """Count a /v1/generate request of `owner` while it runs; 429 past its quota (with its jobs)."""
        self._in_flight[owner] += 1
        try:
            if self._quota is not None:
                active = self._in_flight[owner] + await self._jobs.active.remote(owner)
                if active > self._quota:
                    raise self._over_quota()
            yield
        finally:
            self._in_flight[owner] -= 1
            if not self._in_flight[owner]:
                del self._in_flight[owner]

    def _over_quota(self) -> ApiError:
        return ApiError(
            429,
            None,
            f"this token already has {self._quota} generation(s) queued or running, its quota here; retry when one "
            "has finished",
            self._busy,
        )

    def _output_location(self, requested: str | None) -> str | None:
        if requested is None:
            return self._output_url
        check_allowed_url(requested, self._policy.allowed_output_prefixes, "output")
        return requested

    async def _check_prompt(self, spec: Spec, output_url: str | None) -> None:
        """Refuse (422, field "prompt") a prompt the guardrails block, before it waits for GPUs."""
        if self._guardrails.checks is None:
            return
        try:
            await asyncio.to_thread(check_prompt, self._guardrails.checks, spec.prompt)
        except Blocked as blocked:  # what matched stays in the log and the record
            await asyncio.to_thread(record_blocked, output_url, self._storage, spec, str(blocked))
            raise ApiError(422, "prompt", "prompt blocked by the guardrails") from None

    async def _check_input_exists(self, spec: Spec, request: Request) -> None:
        """Refuse (422) a missing input before it waits for GPUs."""
        for field, url in spec.input_urls().items():
            try:
                found = await asyncio.to_thread(self._storage.exists, url)
            except OSError as error:
                logger.warning("request %s: %s %s cannot be checked: %r", request_id(request), field, url, error)
                raise ApiError(422, field, f"cannot be checked ({SERVER_LOG})") from None
            if not found:
                raise ApiError(422, field, f"{url!r} does not exist")
