"""Remote weights on local disk: each node fetches a remote file or folder once, and hashes what it loads.

A checkpoint, an adapter or a whole checkpoint folder may live on any fsspec URL (`s3://`, `gs://`, ...). Every
rank that loads it asks the `FetchCache` for a local path: the first one on a node downloads the object into the
cache folder, the others (other actors of the node, later runs) find it there. The download is safe against
several loaders at once and against being killed midway:

- an exclusive file lock (`fcntl.flock` on `<entry>/.lock`) is held from the check to the end of the fetch, so a
  second loader waits for the first and then finds the file;
- the bytes go to a temporary file in the same folder, which is renamed onto its name (`os.replace`, atomic) only
  once complete, so a file in the cache is always whole;
- its size must be the store's, and its MD5 the store's checksum where the store gives one (an S3 ETag of a
  single-part upload, a GCS `md5Hash`); its SHA-256 is computed on the way and recorded in the entry's `.records/`
  (`<name>.json`: URL, size, ETag, SHA-256; outside the copied tree, which keeps the remote layout exactly), so
  the sample records can name the content without reading it again.

A cached copy is used when the store still reports the recorded size and ETag (one metadata request per load),
else fetched again. Local paths are used where they are; their SHA-256 is computed once and remembered in the
cache folder by path, size and modification time (`sha256_of`).

The cache folder is `$COSMOS_RAY_CACHE_DIR`, else `~/.cache/cosmos-ray`. Plain Python: no torch, no Ray.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import posixpath
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cosmos_ray.core.storage import Storage, StorageError, is_local, one_line_errors

CACHE_DIR_ENV = "COSMOS_RAY_CACHE_DIR"
CHUNK_BYTES = 8 * 2**20
RECORDS = ".records"  # an entry's records of its files, beside the copied file or tree


def default_cache_dir() -> str:
    """`$COSMOS_RAY_CACHE_DIR`, else `~/.cache/cosmos-ray`."""
    return os.environ.get(CACHE_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "cosmos-ray")


class FetchError(StorageError):
    """A download that did not give the store's object (size or checksum differ)."""


@dataclass(frozen=True)
class Fetched:
    """A file on local disk: where it is, its content's SHA-256, and whether this call downloaded it."""

    path: str
    sha256: str
    fetched: bool = False


@dataclass(frozen=True)
class FetchCache:
    """Local copies of remote files and folders under `root`, reached through `storage`."""

    storage: Storage = field(default_factory=Storage)
    root: str = field(default_factory=default_cache_dir)

    def file(self, url: str) -> Fetched:
        """A local copy of the file at `url` (a local path is used in place), with its SHA-256."""
        if is_local(url):
            path = _local_path(url)
            if not os.path.isfile(path):
                raise StorageError("read", url, "not found" if not os.path.exists(path) else "it is not a file")
            return Fetched(path, self.sha256_of(path))
        entry = self._entry(url)
        name = posixpath.basename(url.rstrip("/")) or "file"
        target, record_path = os.path.join(entry, name), os.path.join(entry, RECORDS, name + ".json")
        with one_line_errors("fetch", url):
            fs, remote = self.storage.filesystem(url)
            info = fs.info(remote)
        if info.get("type") == "directory":
            raise StorageError("fetch", url, "it is a folder, not a file")
        with _locked(entry):
            cached = _cached_record(target, record_path, info)
            if cached is not None:
                return Fetched(target, cached["sha256"])
            record = _download(fs, remote, info, target, record_path, url)
        return Fetched(target, record["sha256"], fetched=True)

    def folder(self, url: str, keep: Callable[[str], bool] | None = None) -> str:
        """A local copy of the folder at `url` (same layout), of the files whose path relative to it `keep` accepts
        (default: all); a local path as it is."""
        if is_local(url):
            return _local_path(url)
        entry = self._entry(url)
        local = os.path.join(entry, "folder")
        with one_line_errors("list", url):
            fs, remote = self.storage.filesystem(url)
            listing = fs.find(remote, detail=True)
        files = {posixpath.relpath(name, remote.rstrip("/")): info for name, info in listing.items()}
        files = {relative: info for relative, info in files.items() if keep is None or keep(relative)}
        if not files:
            raise StorageError("fetch", url, "no files under it" + (" that the model needs" if keep else ""))
        with _locked(entry):
            for relative, info in sorted(files.items()):
                target = os.path.join(local, *relative.split("/"))
                record_path = os.path.join(entry, RECORDS, *relative.split("/")) + ".json"
                if _cached_record(target, record_path, info) is None:
                    remote_url = posixpath.join(url.rstrip("/"), relative)
                    _download(fs, info["name"], info, target, record_path, remote_url)
        return local

    def sha256_of(self, path: str) -> str:
        """The SHA-256 of local file `path`, computed once per path, size and modification time."""
        stat = os.stat(path)
        real = os.path.realpath(path)
        memo = os.path.join(self.root, "hashes", _digest(real)[:24] + ".json")
        key = {"path": real, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        known = _read_json(memo)
        if known is not None and all(known.get(k) == v for k, v in key.items()):
            return str(known["sha256"])
        sha256 = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                sha256.update(chunk)
        _write_json_atomic(memo, {**key, "sha256": sha256.hexdigest()})
        return sha256.hexdigest()

    def _entry(self, url: str) -> str:
        """The cache folder of one URL (a file or a folder)."""
        return os.path.join(self.root, "fetch", _digest(url)[:24])


def _download(fs: Any, remote: str, info: dict[str, Any], target: str, record_path: str, url: str) -> dict[str, Any]:
    """Streams `remote` into `target` (temporary file, verified, renamed) and records it in `record_path`;
    returns the record."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = f"{target}.{secrets.token_hex(4)}.part"
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    try:
        with one_line_errors("fetch", url), fs.open(remote, "rb") as source, open(temporary, "wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                sha256.update(chunk)
                md5.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size != info["size"]:
            raise FetchError("fetch", url, f"got {size} bytes, the store lists {info['size']} (cut off or changed)")
        expected_md5 = _store_md5(info)
        if expected_md5 is not None and md5.hexdigest() != expected_md5:
            raise FetchError("fetch", url, f"MD5 {md5.hexdigest()} differs from the store's checksum {expected_md5}")
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    record = {"url": url, "size": size, "etag": _etag(info), "sha256": sha256.hexdigest()}
    _write_json_atomic(record_path, record)
    return record


def _cached_record(target: str, record_path: str, info: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a cached copy that still matches the store's `info` (size, ETag), else None."""
    record = _read_json(record_path)
    if record is None or not os.path.isfile(target) or os.path.getsize(target) != record.get("size"):
        return None
    if record["size"] != info["size"] or record.get("etag") != _etag(info):
        return None
    return record


def _etag(info: dict[str, Any]) -> str | None:
    """The store's version tag of an object (S3 ETag, GCS generation/md5), or None."""
    for key in ("ETag", "etag", "md5Hash", "generation"):
        if info.get(key):
            return str(info[key]).strip('"')
    return None


def _store_md5(info: dict[str, Any]) -> str | None:
    """The MD5 (hex) the store guarantees for the object's bytes: an S3 ETag of a single-part upload (multipart
    ETags end in `-N` and are not an MD5 of the content) or GCS's base64 `md5Hash`; None where there is none."""
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower()):
        return etag.lower()
    if info.get("md5Hash"):
        return base64.b64decode(info["md5Hash"]).hex()
    return None


@contextmanager
def _locked(folder: str) -> Iterator[None]:
    """Holds an exclusive lock on `folder`/.lock (blocking): one loader per cache entry at a time, across
    processes and threads (each call opens its own file description)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json_atomic(path: str, data: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{secrets.token_hex(4)}.part"
    with open(temporary, "w") as f:
        json.dump(data, f)
    os.replace(temporary, path)


def _local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else os.path.expanduser(url)
