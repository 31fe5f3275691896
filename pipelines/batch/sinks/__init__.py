"""Where a batch run's finished samples go: the `Sink` interface (`base.py`) and its implementations, registered
by name in `SINKS`.

    files        videos/{id}.mp4 + meta/{id}.json; always on, last (it commits)      files.py
    webdataset   WebDataset tar shards + a Parquet index under shards/                webdataset.py

Adding a sink is one new file (a `Sink` subclass decorated with `@register_sink("name")`) plus its import here;
a job names it in `BatchConfig.sinks` (`SinkConfig("name", {...})`, or an instance).
"""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.batch.sinks.base import SINKS, GeneratedSample, RunInfo, Sink, SinkConfig, register_sink
from pipelines.batch.sinks.files import FilesSink
from pipelines.batch.sinks.webdataset import WebDatasetSink

__all__ = [
    "SINKS",
    "FilesSink",
    "GeneratedSample",
    "RunInfo",
    "Sink",
    "SinkConfig",
    "WebDatasetSink",
    "make_sinks",
    "register_sink",
]


def make_sinks(entries: Iterable[Sink | SinkConfig]) -> tuple[Sink, ...]:
    """The run's sinks, in order: those a job names (`SinkConfig`s built from the registry), then the files
    sink, which is always on and last (naming it changes nothing)."""
    sinks = [entry.build() if isinstance(entry, SinkConfig) else entry for entry in entries]
    return (*(sink for sink in sinks if not isinstance(sink, FilesSink)), FilesSink())
