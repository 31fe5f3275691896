"""The rows between the batch job's stages: their Arrow schemas, and `spec_of`, the one place a stage turns a
row's spec JSON back into its spec (in the spec format of the job's model, `cosmos_ray.core.spec_formats`).

Ray Data blocks carry the spec as canonical JSON (the check stage writes it); each stage parses it once per row
(`spec_of` / `with_specs`) and works on the spec object from then on, through what every format offers
(`SpecBase`; typed as the `Spec` union of the formats), so a model with a format of its own needs no stage code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from cosmos_ray.core.outputs import RUN_TABLE_SCHEMA
from cosmos_ray.core.spec_formats import Spec, parse_spec

PENDING, INVALID = "pending", "invalid"  # the check stage's verdicts, besides SKIPPED (already done)

CHECK_COLUMNS = ["spec_json", "name", "source"]  # the manifest columns the check stage reads

CHECKED_SCHEMA = pa.schema(  # check stage -> driver
    [
        ("source", pa.string()),
        ("name", pa.string()),
        ("spec_json", pa.string()),
        ("sample_id", pa.string()),
        ("status", pa.string()),  # PENDING | SKIPPED | INVALID
        ("error", pa.string()),
        ("views", pa.list_(pa.string())),  # SKIPPED: the views its committed record lists
    ]
)

PENDING_SCHEMA = pa.schema(  # driver -> prompt stage -> GPU stage: a row on its way to the GPU stage
    [
        ("row", pa.int64()),  # position in the run table
        ("source", pa.string()),
        ("spec_json", pa.string()),
        ("blocked", pa.string()),  # set by the prompt check
        ("error", pa.string()),  # set when the prompt check could not run
    ]
)

GENERATED_SCHEMA = pa.schema(  # GPU stage -> writer stage
    [
        ("row", pa.int64()),  # position in the run table
        ("source", pa.string()),
        ("spec_json", pa.string()),
        ("error", pa.string()),  # null when generated
        ("blocked", pa.string()),  # why the guardrails refused the prompt or the video; null otherwise
        ("frames", pa.large_binary()),  # uint8 (T, H, W, 3) as raw bytes; empty on error
        ("frames_shape", pa.list_(pa.int64())),
        ("fps", pa.int64()),
        ("metadata_json", pa.string()),
        ("generate_s", pa.float64()),  # wall time of the group call
    ]
)

WRITTEN_SCHEMA = RUN_TABLE_SCHEMA.insert(0, pa.field("row", pa.int64())).append(  # writer stage -> driver
    pa.field("storage_failed", pa.bool_())  # the sample's outputs could not be written (a `StorageError`)
)


def spec_of(row: Mapping[str, Any], model: str) -> Spec:
    """The spec of a row after the check stage (its `spec_json` is canonical and valid in the format of official
    model `model`)."""
    return parse_spec(json.loads(row["spec_json"]), model=model, source=row["source"])


def with_specs(batch: pa.Table, model: str) -> Iterator[tuple[dict[str, Any], Spec]]:
    """Each row of a stage's batch with its spec (in the format of official model `model`), parsed once."""
    for row in batch.to_pylist():
        yield row, spec_of(row, model)
