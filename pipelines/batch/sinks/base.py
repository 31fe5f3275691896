"""The sink interface: where a batch run's finished samples go, and the registry of sinks by name.

A sink is modelled on Ray Data's `Datasink`: hooks on the driver around the run, and a per-sample write in the
writer stage's CPU tasks.

    driver   start(run)        before generation: the run id, the output store, the samples earlier runs
                               committed (skipped now) and those this run generates
    task     write(sample)     once per generated sample, after its mp4 is encoded, before it is committed
    driver   add(record)       as each sample of this run finishes ok (committed)
    driver   finish()          at the end: wait for background work; a phrase for the run's summary, or ""

Sinks write in their order, and the files sink (`sinks/files.py`, always on) comes last: its meta file is the
commit marker, so a sample is committed only once every sink has written it. A sink whose `write` raises fails
the sample, which stays uncommitted and is generated again by the next run: `write` must be idempotent per
sample id. The sink object is pickled into the writer tasks: what `write` needs must be configuration (plain
attributes); driver state set by `start` lives in attributes whose names start with "_", which stay on the
driver. `start` (re)sets that state, so one sink object serves one run at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from cosmos_ray.core.outputs import OutputRecord, OutputStore
from cosmos_ray.core.spec_base import SpecBase


@dataclass(frozen=True)
class RunInfo:
    """What a sink learns on the driver when a run starts."""

    run_id: str
    store: OutputStore  # the output root: the committed per-sample files
    committed: tuple[str, ...]  # sample ids that earlier runs committed (skipped by this one), in manifest order
    to_generate: tuple[str, ...]  # sample ids this run generates
    cpus: float = 1.0  # CPUs for each background task a sink starts (the job's writer CPUs)


@dataclass(frozen=True)
class GeneratedSample:
    """One generated sample in the writer stage, encoded and not yet committed."""

    store: OutputStore
    run_id: str
    spec: SpecBase
    source: str  # where its spec came from, e.g. "specs.jsonl:3"
    mp4: bytes  # the video (of a multiview model: its views stacked)
    metadata: Mapping[str, Any]  # what its meta record will say (read-only)
    views: Mapping[str, bytes] = field(default_factory=dict)  # view name -> its mp4 (cosmos_ray.core.views)


class Sink:
    """Where finished samples go. Every hook defaults to doing nothing: a sink overrides the ones it needs (the
    module docstring says who calls which, where)."""

    name: ClassVar[str] = ""  # the registered name (`register_sink`)

    def start(self, run: RunInfo) -> None:
        """Driver, before generation."""

    def write(self, sample: GeneratedSample) -> OutputRecord | None:
        """Writer task, once per generated sample. Returns the sample's record if this sink commits it (the
        files sink), else None."""
        return None

    def add(self, record: OutputRecord) -> None:
        """Driver, as each sample of this run is committed ok."""

    def finish(self, *, interrupted: bool = False) -> str:
        """Driver, at the end of the run: wait for background work and return a phrase for the summary ("" for
        none). `interrupted` (Ctrl-C stopped the run): return at once, with what is done so far."""
        return ""

    def __getstate__(self) -> dict[str, Any]:
        """What a writer task gets: the configuration, without the driver state ("_" attributes)."""
        return {name: value for name, value in vars(self).items() if not name.startswith("_")}


SinkT = TypeVar("SinkT", bound=type[Sink])

SINKS: dict[str, type[Sink]] = {}  # every registered sink by name


def register_sink(name: str) -> Callable[[SinkT], SinkT]:
    """Class decorator: register a sink under `name`, so that `SinkConfig(name, options)` builds it."""

    def register(cls: SinkT) -> SinkT:
        known = SINKS.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"sink name {name!r} is taken by {known.__module__}.{known.__qualname__}")
        cls.name = name
        SINKS[name] = cls
        return cls

    return register


@dataclass(frozen=True)
class SinkConfig:
    """A sink by its registered name and the keyword arguments of its constructor."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> Sink:
        if self.name not in SINKS:
            raise ValueError(f"unknown sink {self.name!r}; registered: {', '.join(sorted(SINKS))}")
        return SINKS[self.name](**self.options)
