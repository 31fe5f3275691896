"""Check stage (Ray Data tasks on CPU): each manifest row -> one row per generation of its spec, pending or
already done (skipped), or one invalid row (not a valid spec, over a limit, one the model cannot generate, one
that names another checkpoint than the job's, or one whose small input files are unreadable or malformed: an
episode's annotation, a scene's camera files, `SpecBase.check_input_files`; videos and images are read at
generation).

Rows are parsed in the spec format of the job's model (`spec_from_row` -> `cosmos_ray.core.spec_formats`). Each
spec gets the job's weights before its sample id is taken (`SpecBase.for_weights`: the job's checkpoint, and its
adapters where the row names none), so the id and the spec JSON name them.

This is the one stage that parses manifest JSON as written by users; it writes each generation's canonical
spec JSON for the stages after it (`schemas.spec_of`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import ray

from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.limits import SpecLimits
from cosmos_ray.core.manifest import spec_from_row
from cosmos_ray.core.media import MediaError
from cosmos_ray.core.outputs import SKIPPED, OutputStore
from cosmos_ray.core.registry import OfficialModel, get_model
from cosmos_ray.core.spec import SpecError
from cosmos_ray.core.storage import Storage
from pipelines.batch.config import BatchConfig
from pipelines.batch.schemas import CHECK_COLUMNS, CHECKED_SCHEMA, INVALID, PENDING
from pipelines.batch.stages.base import Stage, quiet

CHECK_BATCH_SIZE = 64  # manifest rows per check task (each costs one read of a meta file per generation)


def checked_samples(config: BatchConfig) -> Iterable[dict[str, Any]]:
    """Every sample of the manifest, in manifest order, with its spec checked and its resume status: one per
    generation of each valid row, one for each invalid row (`CHECKED_SCHEMA` rows).

    Ray Data reads the manifest (the driver never holds it whole) and checks its rows in parallel CPU tasks,
    one read of a meta file per generation. This dataset alone preserves order (`read_parquet` gives it its
    own copy of the DataContext; the GPU stage stays unordered), so `limit` keeps the first rows and the
    samples arrive in manifest order, generations in seed order.
    """
    filesystem, path = config.storage.arrow_filesystem(config.manifest)
    manifest = ray.data.read_parquet(path, filesystem=filesystem)  # `preflight` checked its columns
    quiet(manifest.context)
    manifest.context.execution_options.preserve_order = True
    if config.limit is not None:
        manifest = manifest.limit(config.limit)
    return check_stage(config).apply(manifest.select_columns(CHECK_COLUMNS)).iter_rows()


def check_stage(config: BatchConfig) -> Stage:
    return Stage(
        "check",
        check_rows,
        map_batches_kwargs={"batch_size": CHECK_BATCH_SIZE},
        fn_kwargs={
            "output": config.output,
            "storage": config.storage,
            "limits": config.limits,
            "model": config.group.engine.model,
            "checkpoint": config.group.engine.checkpoint_path,
            "loras": config.group.engine.loras,
            "num_generations": config.num_generations,
        },
    )


def check_rows(
    batch: pa.Table,
    *,
    output: str,
    storage: Storage,
    limits: SpecLimits,
    model: str,
    checkpoint: str | None = None,
    loras: tuple[LoraRef, ...] = (),
    num_generations: int | None = None,
) -> pa.Table:
    """Check stage: each manifest row -> the canonical spec of each of its generations, PENDING or SKIPPED
    (done); or one INVALID row (not a valid spec, over `limits`, one the official `model` cannot generate, one
    naming another checkpoint than `checkpoint`, or one whose small input files `storage` cannot read or finds
    malformed). Each spec gets the job's weights (`checkpoint`, and the
    default adapters `loras`) before its sample id is taken; `num_generations` replaces every spec's own."""
    store = OutputStore(output, storage)
    official = get_model(model)
    rows = [
        checked
        for row in batch.to_pylist()
        for checked in _check_row(row, store, storage, limits, official, (checkpoint, loras), num_generations)
    ]
    return pa.Table.from_pylist(rows, schema=CHECKED_SCHEMA)


def _check_row(
    row: dict[str, Any],
    store: OutputStore,
    storage: Storage,
    limits: SpecLimits,
    model: OfficialModel,
    weights: tuple[str | None, tuple[LoraRef, ...]],
    num_generations: int | None,
) -> list[dict[str, Any]]:
    try:
        spec = spec_from_row(row, limits, num_generations=num_generations, model=model).for_weights(*weights)
        model.check_spec(spec)
        spec.check_input_files(storage)  # an episode's annotation, a scene's camera files: small, read before a GPU
    except (SpecError, MediaError) as error:
        return [{**row, "sample_id": None, "status": INVALID, "error": str(error), "views": None}]
    checked = []
    for generation in spec.generations():
        done = store.done_record(generation.sample_id)
        checked.append(
            {
                "source": row["source"],
                "name": generation.name,
                "spec_json": generation.to_json(),
                "sample_id": generation.sample_id,
                "status": PENDING if done is None else SKIPPED,
                "error": None,
                "views": None if done is None else [view["view"] for view in done.views],
            }
        )
    return checked
