"""Prompt-embedding cache: an in-memory LRU per worker in front of optional fsspec storage.

Entries are keyed by a hash of (model id, prompt). With `url` set, every new embedding is also written to
`{url}/{hash[:2]}/{hash}.safetensors`, so the workers of a dataset job encode each distinct prompt once.
The stored file carries the model id and prompt in its metadata; a file that does not parse or does not
match is treated as a miss (a concurrent writer may not have finished, or storage was tampered with).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict

import torch
from fsspec import AbstractFileSystem

from cosmos_ray.core.storage import Storage

log = logging.getLogger(__name__)


def cache_key(model_id: str, prompt: str) -> str:
    """Hex SHA-256 of (model id, prompt)."""
    return hashlib.sha256(json.dumps([model_id, prompt]).encode()).hexdigest()


class EmbeddingCache:
    """LRU of embeddings bounded by `max_bytes`, optionally backed by fsspec storage at `url` (reached with
    the job's `storage` options).

    `get` returns the stored tensor itself (not a copy): callers must not modify it in place.
    Thread-safe, so one cache may serve concurrent requests of a Serve replica.
    """

    def __init__(self, max_bytes: int = 2 << 30, url: str | None = None, storage: Storage = Storage()):
        self.max_bytes = max_bytes
        self.url = url
        self._fs: AbstractFileSystem | None = None  # None: memory only
        self._root = ""
        if url:
            self._fs, self._root = storage.filesystem(url)
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, model_id: str, prompt: str) -> torch.Tensor | None:
        """The cached embedding, from memory or else from storage; None on a miss."""
        key = cache_key(model_id, prompt)
        with self._lock:
            embedding = self._entries.get(key)
            if embedding is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return embedding
        embedding = self._read(self._fs, key, model_id, prompt) if self._fs is not None else None
        with self._lock:
            if embedding is None:
                self.misses += 1
                return None
            self.hits += 1
        self._remember(key, embedding)
        return embedding

    def put(self, model_id: str, prompt: str, embedding: torch.Tensor) -> None:
        """Stores `embedding` in memory and, when `url` is set, in storage (replacing an unreadable file)."""
        key = cache_key(model_id, prompt)
        self._remember(key, embedding)
        if self._fs is not None:
            self._write(self._fs, key, model_id, prompt, embedding)

    def _remember(self, key: str, embedding: torch.Tensor) -> None:
        size = embedding.numel() * embedding.element_size()
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.numel() * old.element_size()
            self._entries[key] = embedding
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.numel() * evicted.element_size()

    def _path(self, key: str) -> str:
        return f"{self._root.rstrip('/')}/{key[:2]}/{key}.safetensors"

    def _read(self, fs: AbstractFileSystem, key: str, model_id: str, prompt: str) -> torch.Tensor | None:
        from safetensors.torch import load

        path = self._path(key)
        try:
            data = fs.cat_file(path)
        except FileNotFoundError:
            return None
        try:
            embedding = load(data)["embedding"]
            meta = _metadata(data)
        except Exception as error:  # noqa: BLE001 - a partial or foreign file: recompute instead of failing the sample
            log.warning("ignoring unreadable embedding cache file %s: %s", path, error)
            return None
        if meta.get("model_id") != model_id or meta.get("prompt") != prompt:
            log.warning("ignoring embedding cache file %s: it belongs to another (model id, prompt)", path)
            return None
        return embedding

    def _write(self, fs: AbstractFileSystem, key: str, model_id: str, prompt: str, embedding: torch.Tensor) -> None:
        from safetensors.torch import save

        path = self._path(key)
        data = save(
            {"embedding": embedding.detach().contiguous().cpu()}, metadata={"model_id": model_id, "prompt": prompt}
        )
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, data)


def _metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a serialized safetensors file (its JSON header)."""
    header_size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + header_size]).get("__metadata__", {})
