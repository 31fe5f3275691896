"""WebDataset tar shards of finished samples, with a Parquet index, beside the per-sample outputs.

Layout under the output root (see docs/outputs.md, "Shards"):

    shards/shard-000000.tar               per sample {key}.mp4, {key}.{view}.mp4 per view, {key}.json (WebDataset)
    shards/index/shard-000000.parquet     one row per sample of that shard; written last: the commit marker

A shard is built from committed per-sample outputs (the video and the meta record, read back from the store)
and written in one atomic write, then its index file in another. The index is the truth: a sample is in a
shard when a committed index file lists it, and a sample enters a shard only if none does, so a rerun never
puts a sample in two shards. A tar without its index file is what a job killed between the two writes leaves;
`ShardStore.remove_uncommitted` deletes such tars before a run builds new shards, and their samples are
sharded again. Shard numbers are the smallest ones no committed index file uses.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

from cosmos_ray.core.outputs import OK, OutputStore
from cosmos_ray.core.storage import join_url

SHARD_NAME = re.compile(r"shard-(\d{6,})\.tar")

VIEW_MEMBER = pa.struct([("view", pa.string()), ("offset", pa.int64()), ("size", pa.int64())])

VIEW_MEMBER_LIST = pa.list_(VIEW_MEMBER)

SHARD_INDEX_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),  # file name under shards/, e.g. "shard-000000.tar"
        ("key", pa.string()),  # the WebDataset key: the members are {key}.mp4 and {key}.json
        ("sample_id", pa.string()),
        ("name", pa.string()),  # the spec's name
        ("mp4_offset", pa.int64()),  # byte range of the video in the tar (data, after the member's header)
        ("mp4_size", pa.int64()),
        ("json_offset", pa.int64()),  # byte range of the record
        ("json_size", pa.int64()),
        ("views", VIEW_MEMBER_LIST),  # the byte range of each view's video, in the record's order
    ]
)


@dataclass(frozen=True)
class ShardConfig:
    """How big a shard gets: a shard closes before the sample that would take it past either limit."""

    max_bytes: int = 1_000_000_000  # of videos per shard (the tar adds about 2 KB per sample)
    max_samples: int = 10_000

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_samples < 1:
            raise ValueError(f"shard limits must be at least 1, got {self.max_bytes} bytes, {self.max_samples} samples")


def webdataset_key(sample_id: str) -> str:
    """The sample's key in a shard: WebDataset splits a member's name at its first dot, so a key has none."""
    return sample_id.replace(".", "_")


class ShardPacker:
    """Groups samples, in the order they finish, into shards within a `ShardConfig`: a shard closes before
    the sample that would take its videos past `max_bytes` (a larger video gets a shard of its own), and when
    it has `max_samples`."""

    def __init__(self, config: ShardConfig):
        self.config = config
        self._sample_ids: list[str] = []
        self._bytes = 0

    def add(self, sample_id: str, video_bytes: int) -> list[list[str]]:
        """Add a finished sample; returns the shards this closes (their sample ids), usually none."""
        closed = []
        if self._sample_ids and self._bytes + video_bytes > self.config.max_bytes:
            closed.append(self.rest())
        self._sample_ids.append(sample_id)
        self._bytes += video_bytes
        if len(self._sample_ids) == self.config.max_samples:
            closed.append(self.rest())
        return closed

    def rest(self) -> list[str]:
        """The samples of the shard still open (maybe none), which closes it."""
        sample_ids, self._sample_ids, self._bytes = self._sample_ids, [], 0
        return sample_ids


class ShardStore:
    """The shards and the shard index under an `OutputStore`'s root."""

    def __init__(self, store: OutputStore):
        self.store = store
        self.folder_url = join_url(store.root_url, "shards")
        self.index_url = join_url(self.folder_url, "index")

    def shard_url(self, shard: str) -> str:
        return join_url(self.folder_url, shard)

    def index_part_url(self, shard: str) -> str:
        return join_url(self.index_url, shard.removesuffix(".tar") + ".parquet")

    def committed(self) -> list[str]:
        """Names of the shards whose index file exists, in order."""
        parts = self.store.storage.list_sizes(self.index_url)
        return sorted(name.removesuffix(".parquet") + ".tar" for name in parts if name.endswith(".parquet"))

    def read_index(self, columns: list[str] | None = None) -> pa.Table:
        """Every committed shard's index rows, in shard order."""
        tables = [self._read_part(shard, columns) for shard in self.committed()]
        schema = SHARD_INDEX_SCHEMA if columns is None else pa.schema([SHARD_INDEX_SCHEMA.field(c) for c in columns])
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def sharded(self, sample_ids: set[str]) -> set[str]:
        """Those of `sample_ids` that a committed shard holds (reads the index one shard at a time)."""
        found: set[str] = set()
        for shard in self.committed():
            found.update(s for s in self._read_part(shard, ["sample_id"]).column(0).to_pylist() if s in sample_ids)
        return found

    def remove_uncommitted(self) -> list[str]:
        """Delete the tars that no index file commits (left by a job killed while writing them); their names."""
        committed = set(self.committed())
        files = self.store.storage.list_sizes(self.folder_url)
        orphans = sorted(name for name in files if SHARD_NAME.fullmatch(name) and name not in committed)
        for name in orphans:
            self.store.storage.delete(self.shard_url(name))
        return orphans

    def new_names(self) -> Iterator[str]:
        """Names for new shards: the smallest numbers that no committed shard uses, in increasing order."""
        matches = (SHARD_NAME.fullmatch(shard) for shard in self.committed())
        used = {int(match.group(1)) for match in matches if match}
        return (f"shard-{n:06d}.tar" for n in itertools.count() if n not in used)

    def video_sizes(self, sample_ids: set[str]) -> dict[str, int]:
        """Size in bytes of the video of each of `sample_ids` that has one (one listing of videos/)."""
        listing = self.store.storage.list_sizes(join_url(self.store.root_url, "videos"))
        sizes = {name.removesuffix(".mp4"): size for name, size in listing.items() if name.endswith(".mp4")}
        return {sample_id: sizes[sample_id] for sample_id in sample_ids if sample_id in sizes}

    def write_shard(self, shard: str, sample_ids: list[str]) -> pa.Table:
        """Build shard `shard` from the committed outputs of `sample_ids`, write it, then commit it with its
        index file. Returns its index rows. Raises ValueError if a sample is not committed as ok."""
        buffer = io.BytesIO()
        rows = []
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for sample_id in sample_ids:
                rows.append(self._add_sample(tar, shard, sample_id))
        index = pa.Table.from_pylist(rows, schema=SHARD_INDEX_SCHEMA)
        self.store.storage.write_bytes_atomic(self.shard_url(shard), buffer.getvalue())
        part = io.BytesIO()
        pq.write_table(index, part)
        self.store.storage.write_bytes_atomic(self.index_part_url(shard), part.getvalue())
        return index

    def _add_sample(self, tar: tarfile.TarFile, shard: str, sample_id: str) -> dict:
        meta = self.store.storage.read_bytes(self.store.meta_url(sample_id))
        record = json.loads(meta)
        if record.get("status") != OK:
            raise ValueError(f"sample {sample_id} is not done (its record says {record.get('status')!r})")
        video = self.store.storage.read_bytes(self.store.video_url(sample_id))
        key = webdataset_key(sample_id)
        mtime = datetime.fromisoformat(record["finished_at"]).timestamp() if record.get("finished_at") else 0
        mp4_offset = _add_member(tar, f"{key}.mp4", video, mtime)
        views = []
        for view in record.get("views") or []:  # a sample's views go into its shard with it, keyed {key}.{view}
            data = self.store.storage.read_bytes(self.store.view_url(sample_id, view["view"]))
            offset = _add_member(tar, f"{key}.{view['view']}.mp4", data, mtime)
            views.append({"view": view["view"], "offset": offset, "size": len(data)})
        json_offset = _add_member(tar, f"{key}.json", meta, mtime)
        return {
            "shard": shard,
            "key": key,
            "sample_id": sample_id,
            "name": record["name"],
            "mp4_offset": mp4_offset,
            "mp4_size": len(video),
            "json_offset": json_offset,
            "json_size": len(meta),
            "views": views,
        }

    def _read_part(self, shard: str, columns: list[str] | None) -> pa.Table:
        data = self.store.storage.read_bytes(self.index_part_url(shard))
        table = pq.read_table(pa.BufferReader(data))
        if "views" not in table.column_names:  # an index file written before views: no sample has any
            table = table.append_column(
                SHARD_INDEX_SCHEMA.field("views"), pa.array([[]] * len(table), VIEW_MEMBER_LIST)
            )
        return table.select(columns or SHARD_INDEX_SCHEMA.names)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> int:
    """Append a file to `tar`; returns the offset of its data (a ustar header is one 512-byte block)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    offset = tar.offset + tarfile.BLOCKSIZE
    tar.addfile(info, io.BytesIO(data))
    return offset
