"""Writer stage (Ray Data tasks on CPU): encode each generated sample to mp4 (and each of its views, of a result
that lists views: `cosmos_ray.core.views`) and hand it to the run's sinks, the last of which (the files sink)
commits it; or record its failure or why the guardrails blocked it (meta only).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from cosmos_ray.core.outputs import OutputRecord, OutputStore
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.core.storage import Storage, StorageError
from cosmos_ray.core.views import encode_video
from pipelines.batch.config import BatchConfig
from pipelines.batch.schemas import WRITTEN_SCHEMA, with_specs
from pipelines.batch.sinks import FilesSink, GeneratedSample, Sink
from pipelines.batch.stages.base import Stage


def write_stage(config: BatchConfig, run_id: str, sinks: Sequence[Sink]) -> Stage:
    return Stage(
        "write",
        write_outputs,
        map_batches_kwargs={"batch_size": 1, "num_cpus": config.writer_cpus},
        fn_kwargs={
            "output": config.output,
            "storage": config.storage,
            "run_id": run_id,
            "model": config.group.engine.model,
            "sinks": tuple(sinks),
        },
    )


def write_outputs(
    batch: pa.Table, *, output: str, storage: Storage, run_id: str, model: str, sinks: Sequence[Sink] | None = None
) -> pa.Table:
    """Writer stage (CPU): encode each generated sample to mp4 and write it to `sinks` (default: the files sink
    alone), or record its failure. A sample whose outputs storage refused is a failed row with `storage_failed`
    set (the driver stops the job after a run of them)."""
    store = OutputStore(output, storage)
    sinks = (FilesSink(),) if sinks is None else sinks
    rows = []
    for row, spec in with_specs(batch, model):
        record, storage_failed = _write_one(store, row, spec, run_id, sinks)
        rows.append({"row": row["row"], **record.to_row(), "storage_failed": storage_failed})
    return pa.Table.from_pylist(rows, schema=WRITTEN_SCHEMA)


def _write_one(
    store: OutputStore, row: dict[str, Any], spec: Spec, run_id: str, sinks: Sequence[Sink]
) -> tuple[OutputRecord, bool]:
    """The sample's record, and whether storage refused to take it."""
    metadata = {**json.loads(row["metadata_json"]), "run_id": run_id}
    timings = metadata.setdefault("timings_s", {})  # the generator's stages, plus the pipeline's two
    timings["group_call"] = round(row["generate_s"], 4)
    try:
        if row["blocked"] is not None:
            return store.write_blocked(spec, row["blocked"], metadata=metadata, source=row["source"]), False
        if row["error"] is not None:
            return store.write_failure(spec, row["error"], metadata=metadata, source=row["source"]), False
        frames = np.frombuffer(row["frames"], dtype=np.uint8).reshape(row["frames_shape"])
        started = time.monotonic()
        video = encode_video(frames, row["fps"], metadata)
        timings["mp4_encode"] = round(time.monotonic() - started, 4)
        metadata["video_bytes"] = video.num_bytes
        sample = GeneratedSample(store, run_id, spec, row["source"], video.mp4, metadata, video.views)
        return _write_sinks(sinks, sample), False
    except Exception as error:  # noqa: BLE001 - encoding, a sink or storage failed: this sample fails (no meta, so a rerun retries it)
        message = f"writing the outputs failed: {type(error).__name__}: {error}"
        if row["error"] is not None:  # keep why it failed in the first place
            message = f"{row['error']}; {message}"
        record = store.failure(spec, message, metadata=metadata, source=row["source"])
        return record, isinstance(error, StorageError)


def _write_sinks(sinks: Sequence[Sink], sample: GeneratedSample) -> OutputRecord:
    """Each sink writes the sample, in order; the record is the one the committing sink (the last) returns."""
    record = None
    for sink in sinks:
        record = sink.write(sample) or record
    if record is None:
        raise RuntimeError(f"no sink committed sample {sample.spec.sample_id} (the files sink must be last)")
    return record
