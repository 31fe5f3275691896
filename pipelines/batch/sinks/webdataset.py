"""The WebDataset shards sink: the driver packs finished samples into shards, Ray tasks write them.

    start    remove a killed run's uncommitted tars; which of the run's samples a committed shard holds;
             the samples earlier runs committed that no shard holds -> ShardPacker
    add      each sample this run commits -> ShardPacker -> a full shard -> write_shard task (CPU): tar, then
             index file
    finish   the last, partial shard; wait for every task; "N shard(s) written"

Shards are built from committed per-sample outputs (cosmos_ray.core.shards explains the layout and the commit
protocol), so this sink writes nothing from the writer stage, sharding never holds up generation, and a shard
that fails to write only leaves its samples for the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import ray

from cosmos_ray.core.outputs import OutputRecord, OutputStore
from cosmos_ray.core.shards import ShardConfig, ShardPacker, ShardStore
from pipelines.batch.sinks.base import RunInfo, Sink, register_sink

logger = logging.getLogger(__name__)


@register_sink("webdataset")
class WebDatasetSink(Sink):
    """Puts each of a run's finished samples into exactly one shard under `shards/`, unless a committed shard
    has it (with `--shard-size` / `--shard-samples`; docs/outputs.md)."""

    def __init__(self, config: ShardConfig | None = None):
        self.config = config or ShardConfig()
        self._sharder: Sharder | None = None  # the run's, on the driver

    def start(self, run: RunInfo) -> None:
        self._sharder = Sharder(run.store, self.config, run_samples={*run.committed, *run.to_generate}, cpus=run.cpus)
        self._sharder.add_committed(run.committed)

    def add(self, record: OutputRecord) -> None:
        assert self._sharder is not None and record.sample_id is not None
        self._sharder.add(record.sample_id, record.metadata["video_bytes"])

    def finish(self, *, interrupted: bool = False) -> str:
        if self._sharder is None:  # the run stopped before it started
            return ""
        if not interrupted:
            self._sharder.finish()
        written = self._sharder.written
        return f"{written} shard(s) written" if written else ""


class Sharder:
    """The driver side of one run's shards: packs samples as they come, one CPU task writes each full shard."""

    def __init__(self, store: OutputStore, config: ShardConfig, *, run_samples: set[str], cpus: float = 1.0):
        self.shards = ShardStore(store)
        removed = self.shards.remove_uncommitted()
        if removed:
            logger.warning("removed %d shard(s) a killed run left without index: %s", len(removed), ", ".join(removed))
        self._names = self.shards.new_names()
        self._packer = ShardPacker(config)
        self._taken = self.shards.sharded(run_samples)  # in a committed shard, or packed by this run
        self._write = ray.remote(num_cpus=cpus)(_write_shard)
        self._writing: dict[ray.ObjectRef, tuple[str, int]] = {}  # task -> (shard, samples)
        self.written = 0  # shards this run wrote

    def add_committed(self, sample_ids: Iterable[str]) -> None:
        """Samples that earlier runs committed: those that no shard holds yet get one (their sizes come from one
        listing of the videos)."""
        todo = [sample_id for sample_id in sample_ids if sample_id not in self._taken]
        if not todo:
            return
        sizes = self.shards.video_sizes(set(todo))
        for sample_id in todo:
            if sample_id in sizes:  # a video deleted since the check stage: not done, so not sharded
                self.add(sample_id, sizes[sample_id])

    def add(self, sample_id: str, video_bytes: int) -> None:
        """A sample just committed; writes every shard this fills, in the background."""
        if sample_id in self._taken:
            return
        self._taken.add(sample_id)
        for shard in self._packer.add(sample_id, video_bytes):
            self._start(shard)
        self._collect(timeout_s=0)

    def finish(self) -> None:
        """Write the last shard (samples that did not fill one) and wait until every shard is written."""
        rest = self._packer.rest()
        if rest:
            self._start(rest)
        self._collect(timeout_s=None)

    def _start(self, sample_ids: list[str]) -> None:
        name = next(self._names)
        self._writing[self._write.remote(self.shards, name, sample_ids)] = (name, len(sample_ids))

    def _collect(self, timeout_s: float | None) -> None:
        """Log the shards written so far; with `timeout_s` None, wait for all."""
        while self._writing:
            done, _ = ray.wait(list(self._writing), num_returns=1, timeout=timeout_s)
            if not done:
                return
            name, count = self._writing.pop(done[0])
            try:
                size = ray.get(done[0])
            except ray.exceptions.RayTaskError as error:
                cause = error.cause if error.cause is not None else error
                logger.warning(
                    "shard %s (%d samples) was not written: %s: %s; the next run shards them",
                    name,
                    count,
                    type(cause).__name__,
                    cause,
                )
                continue
            self.written += 1
            logger.info("shard %s: %d samples, %.1f MB of video", name, count, size / 1e6)


def _write_shard(shards: ShardStore, name: str, sample_ids: list[str]) -> int:
    """Ray task: write one shard and its index file; returns the shard's size in bytes."""
    return sum(shards.write_shard(name, sample_ids).column("mp4_size").to_pylist())
