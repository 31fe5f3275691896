"""The driver's plan: which checked samples need a GPU, in which order.

The driver numbers the checked samples as they arrive (manifest rows, then generations in seed order): the
number is the sample's position in the run table. A sample that needs no GPU (invalid, already done, repeated)
gets its run-table record now; the others are to generate, grouped by adapter set and ordered by prompt within
a set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cosmos_ray.core.outputs import SKIPPED, OutputRecord, OutputStore
from cosmos_ray.core.spec_formats import Spec
from pipelines.batch.schemas import INVALID, spec_of


@dataclass(frozen=True)
class PendingSample:
    """A sample to generate."""

    row: int  # position in the run table
    source: str
    spec: Spec
    sample_id: str

    def to_row(self) -> dict[str, Any]:
        """Its row on the way to the GPU stage (`PENDING_SCHEMA`)."""
        return {
            "row": self.row,
            "source": self.source,
            "spec_json": self.spec.to_json(),
            "blocked": None,
            "error": None,
        }


@dataclass(frozen=True)
class Plan:
    records: dict[int, OutputRecord]  # by run-table position: the samples that need no GPU
    pending: list[PendingSample]  # the samples to generate, by adapter set, then by prompt

    @property
    def committed(self) -> tuple[str, ...]:
        """The samples that earlier runs committed (skipped by this run), in manifest order."""
        ordered = (self.records[row] for row in sorted(self.records))
        return tuple(r.sample_id for r in ordered if r.status == SKIPPED and r.sample_id is not None)


def plan(checked: Iterable[dict[str, Any]], store: OutputStore, model: str) -> Plan:
    """Number the checked samples (`CHECKED_SCHEMA` rows, in manifest order; their specs in the format of official
    model `model`) and plan them.

    A sample id that appears twice is generated once; later rows are recorded as duplicates of the first.
    The samples to generate are grouped by adapter set (`adapter_set`), so a group's engine switches its
    adapters once per set rather than once per row, and ordered by the texts it embeds within a set
    (`SpecBase.encoded_texts`), so a group meets a text again while its embedding is still cached. The driver
    holds one entry per sample (a generation of a row, or an invalid row): a run-table record for a sample that
    needs no GPU, or a `PendingSample` (number, source, parsed spec, sample id) for one to generate, plus the
    source of each distinct sample id; the manifest's other columns are never collected. Each spec is parsed
    once, here.
    """
    records: dict[int, OutputRecord] = {}
    pending: list[PendingSample] = []
    first_source: dict[str, str] = {}  # sample id -> the source of the first row that has it
    for number, row in enumerate(checked):
        if row["status"] == INVALID:
            records[number] = OutputRecord.failed(
                row["error"], name=row["name"] or "", source=row["source"], spec_json=row["spec_json"]
            )
            continue
        spec, sample_id, source = spec_of(row, model), row["sample_id"], row["source"]
        if sample_id in first_source:
            records[number] = store.duplicate(spec, source=source, first_source=first_source[sample_id])
            continue
        first_source[sample_id] = source
        if row["status"] == SKIPPED:
            records[number] = store.skipped(spec, source=source, views=row["views"] or ())
        else:
            pending.append(PendingSample(number, source, spec, sample_id))
    pending.sort(key=lambda sample: (adapter_set(sample.spec), sample.spec.encoded_texts()))
    return Plan(records, pending)


def adapter_set(spec: Spec) -> tuple[tuple[str, float], ...]:
    """The adapters a spec is generated with, as a sortable key that ignores their order (the blend is a sum);
    () for none, which sorts first."""
    return tuple(sorted((lora.path, lora.scale) for lora in spec.cosmos_ray_loras or ()))
