"""What the batch job checks before Ray starts, in seconds, so that it does not fail after the models load."""

from __future__ import annotations

from cosmos_ray.core.guardrails import check_installed
from cosmos_ray.core.manifest import check_manifest
from cosmos_ray.core.storage import StorageNotFoundError
from pipelines.batch.config import BatchConfig


def preflight(config: BatchConfig) -> int:
    """Check, without Ray and in seconds, what would otherwise fail after the models load: the manifest is a
    readable cosmos-ray manifest, files can be written under the output root (and the embedding cache), the
    user's checkpoint and adapters exist, and the guardrails, when on, are installed. Returns the manifest's row
    count; raises `StorageError` or ValueError with a one-line message."""
    check_installed(config.guardrail_setting)
    rows = check_manifest(config.manifest, storage=config.storage)
    config.storage.check_writable(config.output)
    engine = config.group.engine
    if engine.embedding_cache:
        config.storage.check_writable(engine.embedding_cache)
    weights = ([engine.checkpoint_path] if engine.checkpoint_path else []) + [ref.path for ref in engine.loras]
    for url in weights:
        if not config.storage.exists(url):
            raise StorageNotFoundError("read", url, "not found (--checkpoint-path / --lora)")
    return rows
