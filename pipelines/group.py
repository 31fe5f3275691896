"""GPU groups: N rank workers on N GPUs of one node that together run one engine (`cosmos_ray.families`).

A `GPUGroup` lives inside another actor (the batch pipeline's pool actor, or a Serve replica). It holds a
`STRICT_PACK` placement group of N bundles {GPU: 1, CPU: 1}, starts one `RankWorker` per bundle, joins them into
one torch process group (rank 0's node IP and a free port; NCCL on GPUs, gloo on CPU) and gives each the engine of
the model's family (`load_engine`; the base models' `Generator`) with its `ParallelContext`. `stream(spec)` runs
the spec on every rank (context-parallel denoising) and yields a `Step` after each of rank 0's denoising steps (of
each window of an autoregressive spec), then rank 0's result: rank 0 is a Ray streaming generator (one small
object per step, no extra actor), and the group passes its items on as the caller iterates. `generate(spec)` is
the same call without the steps. The owning actor never imports torch: specs, steps and results are torch-free
types.

With guardrails, rank 0 checks the decoded video and blurs its faces on its GPU, as the official inference
does, before the frames leave it: a blocked video never leaves the worker (a `SampleError` whose cause is
`guardrails.Blocked`).

`cancel(key)` stops the sample that `stream(spec, key)` runs between two denoising steps: every rank's progress
callback checks for it (a group of several agrees through one all-reduce per step, so all its ranks stop at the
same step) and raises `Cancelled`, which fails the sample (a `SampleError` with that cause) and keeps the group.

Failures are per sample: an exception on any rank becomes a `SampleError` (keeping that exception as `cause`,
so callers can tell a bad spec or input from an internal failure) and the group serves the next sample. A
rank that dies, or that is still busy `failure_grace_s` after another rank failed (it waits in a collective
for a peer that is gone), breaks the group: its workers are killed and started again, in the same placement
group, before the next sample. Rank workers never restart on their own: a restarted rank could not
rejoin the process group of the others.

The placement group is created by the group, not by Ray Data's `ray_remote_args_fn`, so its lifetime is the
owning actor's: `shutdown()` removes it, and Ray removes it when the owning actor dies (a placement group
fate-shares with its creator). docs/architecture.md explains the choice.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

import ray
from ray import ObjectRef, ObjectRefGenerator
from ray.exceptions import RayActorError, RayTaskError
from ray.util.placement_group import PlacementGroup
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from cosmos_ray.core.guardrails import Guardrails, guard_video
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.progress import Cancelled, Progress, Step
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.spec_formats import Spec

if TYPE_CHECKING:  # the engine (and torch) loads only in rank workers, never in the group's owner
    from cosmos_ray.families import Engine
    from cosmos_ray.parallel import ParallelContext

logger = logging.getLogger(__name__)

PLACEMENT_WAIT_LOG_S = 60.0  # while a placement group is pending, log that the group waits this often


@dataclass(frozen=True)
class GroupConfig:
    """What a GPU group runs and how it is laid out."""

    gpus_per_group: int = 1  # ranks, one per bundle
    engine: EngineOptions = field(default_factory=EngineOptions)  # what every rank's engine is built from
    use_gpus: bool = True  # False: the ranks ask Ray for no GPU and run on CPU (tiny-preset trials, no GPUs)
    # below 1: groups of one rank share a GPU (Ray's fractional GPUs; memory is not divided: the engines must fit)
    gpus_per_rank: float = 1.0
    cpus_per_rank: float = 1.0
    failure_grace_s: float = 60.0  # after one rank fails, how long the others may run before the group is broken
    guardrails: Guardrails | None = None  # rank 0 checks each video and blurs its faces; None: off

    def __post_init__(self) -> None:
        if self.gpus_per_group < 1:
            raise ValueError(f"gpus_per_group must be at least 1, got {self.gpus_per_group}")
        if not 0 < self.gpus_per_rank <= 1:
            raise ValueError(f"gpus_per_rank must be in (0, 1], got {self.gpus_per_rank:g}")
        if self.gpus_per_rank < 1 and self.gpus_per_group > 1:
            raise ValueError(
                f"gpus_per_rank {self.gpus_per_rank:g} (a shared GPU) is for groups of one rank (the ranks of a "
                f"group of {self.gpus_per_group} need a GPU each for their process group); pass gpus_per_group 1"
            )
        if self.cpus_per_rank <= 0 or self.failure_grace_s <= 0:
            raise ValueError("cpus_per_rank and failure_grace_s must be positive")

    @property
    def rank_gpus(self) -> float:
        """What each rank asks Ray for: `gpus_per_rank`, or 0 without GPUs."""
        return self.gpus_per_rank if self.use_gpus else 0

    @property
    def gpus(self) -> float:
        """The GPUs one group takes in the layout (a fraction of one where groups share a GPU)."""
        return self.gpus_per_group * self.gpus_per_rank

    @property
    def bundles(self) -> list[dict[str, float]]:
        """The placement group bundles: one {GPU, CPU} bundle per rank ({CPU} alone without GPUs)."""
        bundle = (
            {"GPU": self.gpus_per_rank, "CPU": self.cpus_per_rank} if self.use_gpus else {"CPU": self.cpus_per_rank}
        )
        return [dict(bundle) for _ in range(self.gpus_per_group)]


class SampleError(RuntimeError):
    """Generating one sample failed.

    `cause`: the exception a rank raised (e.g. a `SpecError` or `MediaError` for the sample's own spec or
    input), None when a rank died. `group_broken`: the group restarts its workers before the next sample.
    """

    def __init__(self, message: str, *, cause: BaseException | None = None, group_broken: bool = False):
        super().__init__(message)
        self.cause = cause
        self.group_broken = group_broken


class GroupStartError(RuntimeError):
    """The group's workers could not be started."""


# `cancel` runs in its own concurrency group, beside the generation it stops.
@ray.remote(max_restarts=0, concurrency_groups={"control": 1})  # type: ignore[call-overload]  # (Ray's stubs lack it)
class RankWorker:
    """One rank of a GPU group: a process on one GPU holding its model family's engine and its `ParallelContext`."""

    generator: Engine  # made by `load`
    parallel: ParallelContext | None  # None in a group of one

    def __init__(self, config: GroupConfig, rank: int):
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        self.config = config
        self.rank = rank
        # Rank 0 generates here while its actor thread streams the steps; one long-lived thread, so that
        # per-thread CUDA state (streams, cuBLAS handles) is made once.
        self._generation_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self._cancelled: set[str] = set()  # keys of samples to stop (`cancel`)

    def rendezvous_address(self) -> str:
        """A tcp:// address on this node with a free port, where the group's process group meets."""
        with socket.socket() as sock:
            sock.bind(("", 0))
            port = sock.getsockname()[1]
        return f"tcp://{ray.util.get_node_ip_address()}:{port}"

    def load(self, init_method: str | None) -> None:
        """Join the process group at `init_method` (None for a group of one) and build the generator."""
        import torch

        from cosmos_ray.families import load_engine
        from cosmos_ray.parallel import ParallelContext

        # Ray sets CUDA_VISIBLE_DEVICES to this rank's GPU; a rank without one runs on the CPU.
        on_gpu = self.config.use_gpus and torch.cuda.is_available()
        device = torch.device("cuda", 0) if on_gpu else torch.device("cpu")
        world_size = self.config.gpus_per_group  # > 1 exactly when there is an init_method
        parallel = None
        if init_method is not None:  # a group of more than one
            backend = "nccl" if on_gpu else "gloo"
            parallel = ParallelContext.init(self.rank, world_size, init_method, backend=backend, device=device)
        self.parallel = parallel
        self.generator = load_engine(self.config.engine, device=device, parallel=parallel)
        if self.rank == 0 and self.config.guardrails is not None:  # a missing model fails the group's start
            self.config.guardrails.load("video", str(device))

    @ray.method(concurrency_group="control")
    def cancel(self, key: str) -> None:
        """Stop the sample `key` at its next denoising step (it may not have started here yet)."""
        self._cancelled.add(key)

    def generate(self, spec: Spec, key: str) -> None:
        """Run this rank's share of `spec` (ranks other than 0; rank 0 runs `generate_streaming`)."""
        self.generator(spec, self._stop_if_cancelled(key))

    @ray.method(num_returns="streaming")
    def generate_streaming(self, spec: Spec, key: str) -> Iterator[Step | GenerationResult]:
        """Rank 0: run `spec`, yielding a `Step` after each denoising step and the result last.

        The engine reports steps through a callback, on the generation thread; this is the one place where
        they become a stream.
        """
        steps: queue.SimpleQueue[Step | None] = queue.SimpleQueue()
        stop_if_cancelled = self._stop_if_cancelled(key)

        def report(step: Step) -> None:
            stop_if_cancelled(step)
            steps.put(step)

        generation: Future[GenerationResult | None] = self._generation_thread.submit(self.generator, spec, report)
        generation.add_done_callback(lambda _: steps.put(None))
        for step in iter(steps.get, None):  # noqa: UP028 - not `yield from`: Ray drives this generator with send()
            yield step
        result = generation.result()  # re-raises the generator's exception
        assert result is not None  # rank 0 always returns the video
        yield self._guarded(result)

    def _stop_if_cancelled(self, key: str) -> Progress:
        """The progress callback of sample `key` on this rank: raises `Cancelled` once `cancel(key)` reached any
        rank of the group (all ranks agree at each step)."""
        self._cancelled.intersection_update({key})  # forget keys of earlier samples (in place: `cancel` adds)

        def check(step: Step) -> None:
            stop = key in self._cancelled
            if self.parallel is not None:
                stop = self.parallel.any_rank(stop)
            if stop:
                self._cancelled.discard(key)
                raise Cancelled(f"cancelled after {step}")

        return check

    def _guarded(self, result: GenerationResult) -> GenerationResult:
        """The result with its video checked and faces blurred; raises `Blocked` if the guardrails refuse it."""
        guardrails = self.config.guardrails
        if guardrails is None:
            return replace(result, metadata={**result.metadata, "guardrails": None})
        started = time.monotonic()
        frames = guard_video(guardrails, result.frames)
        timings = {**result.metadata.get("timings_s", {}), "guardrails": round(time.monotonic() - started, 4)}
        return replace(
            result, frames=frames, metadata={**result.metadata, "guardrails": guardrails.name, "timings_s": timings}
        )


class GPUGroup:
    """N rank workers on one node, used as one generator: `stream(spec)` yields `Step`s then the result.

    Calls from several threads run one at a time, so every rank sees the samples in the same order (ranks
    that started different samples would wait for each other in their collectives forever).

    `placement_group`: run in this existing group (e.g. a Serve replica's; it must have one free {GPU: 1}
    bundle per rank) instead of creating one. `name` names the created placement group; a placement group
    left with that name by an earlier incarnation of the owning actor is removed first.
    """

    def __init__(self, config: GroupConfig, *, placement_group: PlacementGroup | None = None, name: str | None = None):
        self.config = config
        self.name = name
        self._owns_placement_group = placement_group is None
        self._placement_group: PlacementGroup | None = placement_group or self._create_placement_group()
        self.workers: list[ray.actor.ActorHandle] = []  # rank order; empty while the group is broken
        self.restarts = 0
        self._one_sample_at_a_time = threading.Lock()
        self._start_workers()

    def stream(self, spec: Spec, key: str | None = None) -> Iterator[Step | GenerationResult]:
        """Generate `spec` on every rank: a `Step` after each of rank 0's denoising steps, then its result.

        Raises `SampleError` if the sample failed (cause `Cancelled` after `cancel(key)`). The group is held from
        the first item to the last: iterate to the end (a stream left unfinished holds the group until it is
        closed or garbage-collected).
        """
        key = key or uuid.uuid4().hex
        with self._one_sample_at_a_time:
            if not self.workers:  # broken by the previous sample
                self.restarts += 1
                self._start_workers()
            rank0, *others = self.workers
            calls = [rank0.generate_streaming.remote(spec, key)]
            calls += [worker.generate.remote(spec, key) for worker in others]
            try:
                yield from stream_ranks(calls, self.config.failure_grace_s)
            except SampleError as error:
                if error.group_broken:
                    self._kill_workers()
                raise

    def generate(self, spec: Spec) -> GenerationResult:
        """`stream(spec)` without the steps: rank 0's result; raises `SampleError` if the sample failed."""
        return _last(self.stream(spec))

    def cancel(self, key: str) -> None:
        """Stop the sample of `stream(spec, key)` after its current denoising step, whether it runs now or starts
        later; its stream then raises `SampleError` with cause `Cancelled`. Returns at once; any thread."""
        for worker in self.workers:
            worker.cancel.remote(key)

    def shutdown(self) -> None:
        """Kill the workers and remove the placement group if this group created it. Idempotent."""
        self._kill_workers()
        if self._owns_placement_group and self._placement_group is not None:
            ray.util.remove_placement_group(self._placement_group)
            self._placement_group = None

    def _create_placement_group(self) -> PlacementGroup:
        if self.name:
            _remove_placement_group_named(self.name)
        group = ray.util.placement_group(self.config.bundles, strategy="STRICT_PACK", name=self.name or "")
        while not group.wait(timeout_seconds=PLACEMENT_WAIT_LOG_S):  # pending until a node has N free GPUs
            logger.warning("GPU group %s waits for %g GPU(s) on one node", self.name or "", self.config.gpus)
        return group

    def _start_workers(self) -> None:
        if self._placement_group is None:
            raise GroupStartError(f"GPU group {self.name or ''} was shut down")
        strategy = PlacementGroupSchedulingStrategy(self._placement_group, placement_group_capture_child_tasks=True)
        options = {"num_gpus": self.config.rank_gpus, "num_cpus": self.config.cpus_per_rank}
        self.workers = [
            RankWorker.options(**options, scheduling_strategy=strategy).remote(  # type: ignore[attr-defined]
                self.config, rank
            )  # (Ray's typing of an actor class lacks `options`)
            for rank in range(self.config.gpus_per_group)
        ]
        try:
            init_method: str | None = None  # a group of one needs no rendezvous
            if len(self.workers) > 1:
                init_method = cast(str, ray.get(self.workers[0].rendezvous_address.remote()))
            ray.get([worker.load.remote(init_method) for worker in self.workers])
        except (RayActorError, RayTaskError) as error:
            self._kill_workers()
            raise GroupStartError(f"GPU group {self.name or ''} could not start: {_describe(error)}") from error

    def _kill_workers(self) -> None:
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
        self.workers = []


def wait_for_ranks(calls: list[ObjectRef | ObjectRefGenerator], failure_grace_s: float) -> Any:
    """`stream_ranks` without the steps: the first call's (rank 0's) value, once every rank has finished."""
    return _last(stream_ranks(calls, failure_grace_s))


def stream_ranks(calls: list[ObjectRef | ObjectRefGenerator], failure_grace_s: float) -> Iterator[Any]:
    """Follow every rank's call until all have finished: yield the `Step`s of a streaming call (rank 0's
    `generate_streaming`) as they arrive, then the first call's (rank 0's) value; raise `SampleError` for the
    first failure.

    The group is broken when a rank died, or when ranks are still running `failure_grace_s` after another
    rank failed: they wait in a collective for a peer that has left it.
    """
    pending = list(calls)
    value = None
    first_error: RayTaskError | None = None
    deadline: float | None = None  # set once a rank failed
    while pending:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        done, pending = ray.wait(pending, num_returns=1, timeout=timeout)
        if not done and first_error is not None:  # only a deadline ends a wait early
            raise SampleError(
                f"{_describe(first_error)} (and {len(pending)} rank(s) still running {failure_grace_s:g}s later)",
                cause=_cause(first_error),
                group_broken=True,
            )
        call = done[0]
        try:
            item = ray.get(next(call) if isinstance(call, ObjectRefGenerator) else call)
        except RayActorError as error:
            raise SampleError(f"a rank worker died: {_describe(error)}", group_broken=True) from None
        except RayTaskError as error:
            first_error = first_error or error
            deadline = deadline or time.monotonic() + failure_grace_s
            continue
        if isinstance(item, Step):
            yield item
            pending.append(call)  # the generator goes on
        elif call is calls[0]:
            value = item
    if first_error is not None:
        raise SampleError(_describe(first_error), cause=_cause(first_error))
    yield value


def _last(items: Iterator[Any]) -> Any:
    """The last item of a stream, after running it to its end."""
    return deque(items, maxlen=1).pop()


def remove_placement_groups(name_prefix: str) -> None:
    """Remove every live placement group whose name starts with `name_prefix`."""
    for info in ray.util.placement_group_table().values():
        if info["name"].startswith(name_prefix) and info["state"] != "REMOVED":
            _remove_placement_group_named(info["name"])


def _remove_placement_group_named(name: str) -> None:
    try:
        ray.util.remove_placement_group(ray.util.get_placement_group(name))
    except ValueError:  # no placement group has that name
        pass


def _cause(error: BaseException) -> BaseException:
    """The exception a remote call raised, without Ray's wrapping."""
    return error.cause if isinstance(error, RayTaskError) and error.cause is not None else error


def _describe(error: BaseException) -> str:
    """`Type: message` of the exception a remote call raised, without Ray's wrapping and traceback."""
    cause = _cause(error)
    lines = str(cause).strip().splitlines() or [""]
    return f"{type(cause).__name__}: {lines[0]}"  # Ray's actor errors go on with ids and addresses
