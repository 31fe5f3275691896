"""Storing results: a generated video (and its views' videos, of a multiview model) and its record go to an output
location as the batch job writes them (`OutputStore`: the videos, then the record that commits them), and an
identical earlier request is found there
(but not one written with guardrails off when this deployment runs them: that video was never checked).
A request the guardrails refused is logged and recorded there as "blocked", without a video."""

from __future__ import annotations

import logging
from typing import Any

from cosmos_ray.core.outputs import OK, OutputRecord, OutputStore
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.core.storage import Storage
from pipelines.serve.replica import Finished

logger = logging.getLogger("ray.serve")


def store_result(output_url: str, storage: Storage, spec: Spec, result: Finished) -> dict[str, Any]:
    """Write the video and then its record (the commit marker); the response JSON."""
    store = OutputStore(output_url, storage)
    record = store.write_ok(spec, result.mp4, result.metadata, source="serve", views=result.views)
    return _result_json(store, spec, record, cached=False)


def record_blocked(output_url: str | None, storage: Storage, spec: Spec, reason: str) -> None:
    """Log a request the guardrails refused and, with an output location, record it there (no video)."""
    logger.warning("sample %s blocked: %s", spec.sample_id, reason)
    if output_url is not None:
        OutputStore(output_url, storage).write_blocked(spec, reason, source="serve")


def stored_result(output_url: str, storage: Storage, spec: Spec, guardrails: bool) -> dict[str, Any] | None:
    """The response JSON of an identical earlier request (same sample id) that is stored, if any; with
    `guardrails` (this deployment checks its videos) only one whose video the guardrails checked."""
    store = OutputStore(output_url, storage)
    record = store.read_record(spec.sample_id)
    if record is None or record.status != OK:
        return None
    if guardrails and not (record.metadata or {}).get("guardrails"):  # written by a run with them off
        logger.info(
            "sample %s: the stored video was not checked by the guardrails; generating it again", spec.sample_id
        )
        return None
    return _result_json(store, spec, record, cached=True)


def _result_json(store: OutputStore, spec: Spec, record: OutputRecord, cached: bool) -> dict[str, Any]:
    return {
        "sample_id": spec.sample_id,
        "video_url": record.video_url,
        "views": record.views,
        "metadata_url": store.meta_url(spec.sample_id),
        "metadata": record.metadata,
        "cached": cached,
    }
