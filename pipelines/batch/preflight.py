"""What the batch job checks before Ray starts, in seconds, so that it does not fail after the models load."""

from __future__ import annotations

from cosmos_ray.core.guardrails import check_installed
from cosmos_ray.core.manifest import check_manifest
from pipelines.batch.config import BatchConfig


def preflight(config: BatchConfig) -> int:
    """Check, without Ray and in seconds, what would otherwise fail after the models load: the manifest is a
    readable cosmos-ray manifest, files can be written under the output root (and the embedding cache), and the
    guardrails, when on, are installed. Returns the manifest's row count; raises `StorageError` or ValueError
    with a one-line message."""
    check_installed(config.guardrail_setting)
    rows = check_manifest(config.manifest, storage=config.storage)
    config.storage.check_writable(config.output)
    if config.group.engine.embedding_cache:
        config.storage.check_writable(config.group.engine.embedding_cache)
    return rows
