"""Where generated videos and their records go, on any fsspec URL.

Layout under the output root (see docs/outputs.md):

    videos/{sample_id}.mp4            the video (of a multiview model: its views stacked, as the official one)
    views/{sample_id}/{view}.mp4      of a result that lists views (cosmos_ray.core.views): one video per view
    meta/{sample_id}.json             its record; written last, so it is the commit marker
    runs/{run_id}/metadata.parquet    one row per manifest row of a run: ok, failed, blocked, skipped or duplicate

A sample is done when its record exists with status "ok" and its video and the videos of the views it lists
exist; a rerun skips it. The batch
pipeline, the Serve app and the local CLI all write through `OutputStore`.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cosmos_ray.core.spec_base import SpecBase
from cosmos_ray.core.storage import Storage, join_url, resolve_url

OK, FAILED, SKIPPED, DUPLICATE = "ok", "failed", "skipped", "duplicate"  # the last two only in run tables
BLOCKED = "blocked"  # the guardrails refused the prompt or the video (cosmos_ray/core/guardrails.py); no video

RUN_TABLE_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("name", pa.string()),
        ("status", pa.string()),
        ("video_url", pa.string()),
        ("views", pa.list_(pa.struct([("view", pa.string()), ("video_url", pa.string())]))),
        ("error", pa.string()),
        ("source", pa.string()),
        ("spec_json", pa.string()),
        ("metadata_json", pa.string()),
        ("finished_at", pa.string()),
    ]
)


@dataclass(frozen=True)
class OutputRecord:
    """What happened to one sample. The JSON form is the meta file; the row form is a run-table row."""

    sample_id: str | None  # None when the manifest row is not a valid spec
    name: str
    status: str  # OK | FAILED | BLOCKED | SKIPPED | DUPLICATE
    video_url: str | None = None
    views: list[dict[str, str]] = field(default_factory=list)  # [{"view": name, "video_url": url}], in order
    error: str | None = None
    source: str = ""  # where the spec came from, e.g. "specs.jsonl:3"
    spec_json: str | None = None  # canonical spec JSON (or the raw row text when it did not parse)
    metadata: dict[str, Any] = field(default_factory=dict)  # seed, model, timings per stage, ...
    finished_at: str = ""  # ISO 8601, UTC

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True).encode("utf-8")

    @classmethod
    def failed(
        cls,
        error: str,
        *,
        name: str,
        source: str = "",
        spec_json: str | None = None,
        sample_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> OutputRecord:
        """The record of a failure: a spec that failed (`sample_id` set) or a manifest row that is not a valid
        spec (`sample_id` None, `spec_json` the row's raw text)."""
        return cls(
            sample_id=sample_id,
            name=name,
            status=FAILED,
            error=error,
            source=source,
            spec_json=spec_json,
            metadata=_json_ready(metadata or {}, sample_id or name),
            finished_at=_now(),
        )

    @classmethod
    def from_json(cls, data: bytes) -> OutputRecord:
        return cls(**json.loads(data))

    @property
    def view_urls(self) -> list[str]:
        """The URLs of the views' videos (none for a result of one view)."""
        return [view["video_url"] for view in self.views]

    def to_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["metadata_json"] = json.dumps(row.pop("metadata"), sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OutputRecord:
        fields = dict(row)
        fields["metadata"] = json.loads(fields.pop("metadata_json") or "{}")
        fields["views"] = fields.get("views") or []  # null in run tables written before views
        return cls(**fields)


class OutputStore:
    """Videos, per-sample records and run tables under one root URL."""

    def __init__(self, root_url: str, storage: Storage = Storage()):
        self.root_url = resolve_url(root_url)
        self.storage = storage

    def video_url(self, sample_id: str) -> str:
        return join_url(self.root_url, "videos", f"{sample_id}.mp4")

    def view_url(self, sample_id: str, view: str) -> str:
        return join_url(self.root_url, "views", sample_id, f"{view}.mp4")

    def meta_url(self, sample_id: str) -> str:
        return join_url(self.root_url, "meta", f"{sample_id}.json")

    def run_table_url(self, run_id: str) -> str:
        return join_url(self.root_url, "runs", run_id, "metadata.parquet")

    def read_record(self, sample_id: str) -> OutputRecord | None:
        """The committed record of `sample_id`, or None if there is none (or it is unreadable)."""
        url = self.meta_url(sample_id)
        try:
            return OutputRecord.from_json(self.storage.read_bytes(url))
        except (FileNotFoundError, ValueError, TypeError):  # missing, or a damaged or foreign file
            return None

    def is_done(self, sample_id: str) -> bool:
        """True when `sample_id` has a committed record with status "ok" and its video and its views' videos are
        still there (a file deleted by hand makes the sample not done, so a rerun makes it again)."""
        return self.done_record(sample_id) is not None

    def done_record(self, sample_id: str) -> OutputRecord | None:
        """The committed record of `sample_id` if the sample is done (`is_done`), else None."""
        record = self.read_record(sample_id)
        if record is None or record.status != OK:
            return None
        files = (self.video_url(sample_id), *record.view_urls)
        return record if all(self.storage.exists(url) for url in files) else None

    def write_ok(
        self,
        spec: SpecBase,
        mp4_bytes: bytes,
        metadata: Mapping[str, Any],
        *,
        source: str = "",
        views: Mapping[str, bytes] | None = None,
    ) -> OutputRecord:
        """Write the views' videos (`views`: view name -> mp4, of a result that lists views), the video, then
        the record (the commit marker), which lists the views. Returns the record."""
        views = views or {}
        record = self._video_record(spec, OK, source, views, metadata=_json_ready(metadata, spec.sample_id))
        for view, mp4 in views.items():
            self.storage.write_bytes_atomic(self.view_url(spec.sample_id, view), mp4)
        self.storage.write_bytes_atomic(self.video_url(spec.sample_id), mp4_bytes)
        self.storage.write_bytes_atomic(self.meta_url(spec.sample_id), record.to_json())
        return record

    def failure(
        self, spec: SpecBase, error: str, *, metadata: Mapping[str, Any] | None = None, source: str = ""
    ) -> OutputRecord:
        """The record of a spec that failed; nothing is written (see `write_failure`)."""
        return OutputRecord.failed(
            error, name=spec.name, source=source, spec_json=spec.to_json(), sample_id=spec.sample_id, metadata=metadata
        )

    def write_failure(
        self, spec: SpecBase, error: str, *, metadata: Mapping[str, Any] | None = None, source: str = ""
    ) -> OutputRecord:
        """Record that `spec` failed: its meta file gets status "failed", so a rerun tries it again."""
        record = self.failure(spec, error, metadata=metadata, source=source)
        self.storage.write_bytes_atomic(self.meta_url(spec.sample_id), record.to_json())
        return record

    def write_blocked(
        self, spec: SpecBase, reason: str, *, metadata: Mapping[str, Any] | None = None, source: str = ""
    ) -> OutputRecord:
        """Record that the guardrails refused `spec`: its meta file gets status "blocked" and the reason, and no
        video stays (one an earlier run made without guardrails is deleted, with its views). A rerun checks it
        again."""
        record = OutputRecord(
            sample_id=spec.sample_id,
            name=spec.name,
            status=BLOCKED,
            error=reason,
            source=source,
            spec_json=spec.to_json(),
            metadata=_json_ready(metadata or {}, spec.sample_id),
            finished_at=_now(),
        )
        self.storage.write_bytes_atomic(self.meta_url(spec.sample_id), record.to_json())
        if self.storage.exists(self.video_url(spec.sample_id)):
            self.storage.delete(self.video_url(spec.sample_id))
        views_url = join_url(self.root_url, "views", spec.sample_id)
        for name in self.storage.list_sizes(views_url):
            self.storage.delete(join_url(views_url, name))
        return record

    def skipped(self, spec: SpecBase, *, source: str = "", views: Iterable[str] = ()) -> OutputRecord:
        """The run-table record of a sample that was already done, with the `views` its record lists (nothing
        is written)."""
        return self._video_record(spec, SKIPPED, source, views)

    def duplicate(self, spec: SpecBase, *, source: str, first_source: str) -> OutputRecord:
        """The run-table record of a manifest row whose sample an earlier row (`first_source`) already has."""
        return self._video_record(spec, DUPLICATE, source, (), metadata={"duplicate_of": first_source})

    def _video_record(
        self, spec: SpecBase, status: str, source: str, views: Iterable[str], **fields: Any
    ) -> OutputRecord:
        """The record of a spec whose video (and those of `views`) is (or already was) at its place in the store."""
        return OutputRecord(
            sample_id=spec.sample_id,
            name=spec.name,
            status=status,
            video_url=self.video_url(spec.sample_id),
            views=[{"view": view, "video_url": self.view_url(spec.sample_id, view)} for view in views],
            source=source,
            spec_json=spec.to_json(),
            finished_at=_now(),
            **fields,
        )

    def write_run_table(self, run_id: str, records: Iterable[OutputRecord]) -> str:
        """Write every record of a run to `runs/{run_id}/metadata.parquet` atomically; returns its URL."""
        if not run_id or "/" in run_id or run_id in (".", ".."):
            raise ValueError(f"run_id must be a non-empty name without '/', got {run_id!r}")
        table = pa.Table.from_pylist([r.to_row() for r in records], schema=RUN_TABLE_SCHEMA)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        url = self.run_table_url(run_id)
        self.storage.write_bytes_atomic(url, buffer.getvalue())
        return url

    def read_run_table(self, run_id: str) -> list[OutputRecord]:
        data = self.storage.read_bytes(self.run_table_url(run_id))
        return [OutputRecord.from_row(row) for row in pq.read_table(pa.BufferReader(data)).to_pylist()]


def _json_ready(metadata: Mapping[str, Any], sample: str) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(metadata)))
    except (TypeError, ValueError) as error:
        raise TypeError(f"metadata of sample {sample} is not JSON-serializable: {error}") from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
