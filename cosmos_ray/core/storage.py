"""Storage on any fsspec URL: the `Storage` handle, its one-line errors, and URL helpers that need no options.

URLs are local paths, `file://`, `s3://`, `gs://`, `memory://`, ... A job or app makes one `Storage` from its
command line or arguments and hands it down: to the manifest maker and reader, the output store, every rank's
generator (conditioning inputs, the shared embedding cache) and the Serve ingress. Its `options` are passed
unchanged to the fsspec filesystem of remote URLs (credentials, `client_kwargs` with an `endpoint_url`, ...)
and ignored for local paths, so one handle can serve a job that reads local specs and writes to a bucket.

Every failure of a read, write, listing or check raises `StorageError` (an `OSError`; `StorageNotFoundError` is
also a `FileNotFoundError`) whose message is one line: what was done, the URL, and what is missing or denied.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow.fs
from fsspec.implementations.local import LocalFileSystem

from cosmos_ray.core import http_inputs

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
HTTP_SCHEMES = ("http", "https")

WRITE_CHECK_PREFIX = ".cosmos-ray-write-check-"  # `Storage.check_writable` writes and deletes one such file
WRITE_CHECK_BYTES = 1 << 20  # its size: 1 MiB, about a short clip's mp4


@dataclass(frozen=True)
class Storage:
    """How a job or app reaches URLs: fsspec options for remote file systems, and the http(s) policy.

    `options` reach the filesystem of every remote URL (never local paths); `allow_http` says whether http(s)
    URLs may be read as inputs (off by default: a spec would make the workers fetch any address). http(s) reads
    follow no redirect and reach public addresses only, unless `allow_private_http` (`cosmos_ray.core.http_inputs`).
    """

    options: dict[str, Any] | None = None
    allow_http: bool = False
    allow_private_http: bool = False

    def may_read(self, url: str) -> bool:
        """False for an http(s) URL when http inputs are off."""
        return self.allow_http or url_scheme(url) not in HTTP_SCHEMES

    def filesystem(self, url: str) -> tuple[fsspec.AbstractFileSystem, str]:
        """The fsspec filesystem for `url` and the path inside it; the options only reach remote ones."""
        options = {} if is_local(url) else (self.options or {})
        return fsspec.core.url_to_fs(url, **options)

    def arrow_filesystem(self, url: str) -> tuple[pyarrow.fs.FileSystem, str]:
        """`filesystem(url)` wrapped for pyarrow readers (and Ray Data's), and the path inside it."""
        fs, path = self.filesystem(url)
        return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs)), path

    def read_bytes(self, url: str, *, max_bytes: int | None = None) -> bytes:
        """The whole content of the object or file at `url`; an http(s) body over `max_bytes` is refused
        before it is read whole (other stores: the caller checks the size first, `filesystem(url)[0].size`)."""
        with one_line_errors("read", url):
            if url_scheme(url) in HTTP_SCHEMES:
                return http_inputs.get(url, allow_private=self.allow_private_http, max_bytes=max_bytes)
            fs, path = self.filesystem(url)
            return fs.cat_file(path)

    def read_text(self, url: str) -> str:
        """The content of `url` decoded as UTF-8."""
        return self.read_bytes(url).decode("utf-8")

    def exists(self, url: str) -> bool:
        """True when a file or object exists at `url`."""
        with one_line_errors("check", url):
            if url_scheme(url) in HTTP_SCHEMES:
                return http_inputs.exists(url, allow_private=self.allow_private_http)
            fs, path = self.filesystem(url)
            return fs.exists(path)

    def list_sizes(self, folder_url: str) -> dict[str, int]:
        """{file name: size in bytes} of the files directly in a folder; empty if the folder does not exist.
        Always listed afresh: other processes write there (fsspec caches the listings of some stores)."""
        try:
            with one_line_errors("list", folder_url):
                fs, path = self.filesystem(folder_url)
                entries = fs.ls(path, detail=True, refresh=True)
        except StorageNotFoundError:
            return {}
        return {posixpath.basename(e["name"].rstrip("/")): e["size"] for e in entries if e["type"] == "file"}

    def glob_urls(self, pattern: str) -> list[str]:
        """Sorted URLs of the files matching a glob (`*`, `?`, `[...]`, `**`), in the pattern's own form."""
        with one_line_errors("list", pattern):
            fs, path = self.filesystem(pattern)
            matches = sorted(p for p in fs.glob(path) if fs.isfile(p))
        if is_local(pattern):
            return matches
        return [fs.unstrip_protocol(p) for p in matches]

    def write_bytes_atomic(self, url: str, data: bytes) -> None:
        """Write `data` to `url` so that readers see either nothing or the whole content.

        Local files: write a temporary file in the same folder, fsync, then `os.replace` onto the target.
        Object stores: one `pipe_file` call, which uploads the whole object; stores only make an object visible
        once its upload completes, so a partial object is never observable.
        """
        with one_line_errors("write", url):
            fs, path = self.filesystem(url)
            if isinstance(fs, LocalFileSystem):
                _write_local_atomic(path, data)
            else:
                fs.pipe_file(path, data)

    def delete(self, url: str) -> None:
        """Delete the file or object at `url`."""
        with one_line_errors("delete", url):
            fs, path = self.filesystem(url)
            fs.rm_file(path)

    def check_writable(self, folder_url: str) -> None:
        """Raise `StorageError` unless files can be written under `folder_url`: writes a file of
        `WRITE_CHECK_BYTES` random bytes there (synced to disk) and deletes it, so a missing bucket, missing
        credentials, a read-only path or a full disk show before any work is done (an empty file would still
        fit on a full disk)."""
        if is_local(folder_url) and os.path.isfile(_local_path(folder_url)):
            raise StorageError("write to", folder_url, "it is a file, not a folder")
        probe = join_url(folder_url, WRITE_CHECK_PREFIX + secrets.token_hex(4))
        try:
            self.write_bytes_atomic(probe, secrets.token_bytes(WRITE_CHECK_BYTES))
            self.delete(probe)
        except StorageError as error:  # name the folder the caller gave, not the probe file
            raise type(error)("write to", folder_url, error.reason) from error.__cause__


class StorageError(OSError):
    """A storage operation that failed: `action` ("read", "write", ...) of `url`, and `reason` in a few words."""

    def __init__(self, action: str, url: str, reason: str):
        self.action = action
        self.url = url
        self.reason = reason
        super().__init__(f"cannot {action} {url}: {reason}")

    # pickles with its fields, so it crosses process boundaries (e.g. from a Ray worker)
    def __reduce__(self) -> tuple[type[StorageError], tuple[str, str, str]]:
        return type(self), (self.action, self.url, self.reason)


class StorageNotFoundError(StorageError, FileNotFoundError):
    """Nothing exists at the URL (or its bucket does not exist)."""


@contextmanager
def one_line_errors(action: str, url: str) -> Iterator[None]:
    """In this block, turn whatever a file system raises (OSError, botocore, gcsfs, ImportError for a missing
    backend) into `StorageError` naming the action, the URL and the cause."""
    try:
        yield
    except StorageError:
        raise
    except Exception as error:  # noqa: BLE001 - every fsspec backend raises its own types
        raise _storage_error(action, url, error) from error


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _storage_error(action: str, url: str, error: Exception) -> StorageError:
    message = (str(error).strip().splitlines() or [""])[0]
    if isinstance(error, http_inputs.HttpRefused):
        return StorageError(action, url, message)
    if isinstance(error, FileNotFoundError):
        # s3fs: FileNotFoundError("The specified bucket does not exist") or FileNotFoundError("bucket/key")
        missing = "the bucket does not exist" if "bucket does not exist" in message.lower() else "not found"
        if action == "write" and error.strerror:  # a local folder that cannot be created
            missing = _lower_first(error.strerror)
        return StorageNotFoundError(action, url, missing)
    if isinstance(error, PermissionError):
        return StorageError(action, url, "permission denied")
    if isinstance(error, NotADirectoryError | FileExistsError):
        return StorageError(action, url, "a part of the path is a file, not a folder")
    if isinstance(error, OSError) and error.strerror:  # local errors: "Read-only file system", ...
        return StorageError(action, url, _lower_first(error.strerror))
    if type(error).__name__ == "NoCredentialsError":  # botocore, without importing it
        return StorageError(action, url, "no credentials found (set them in the environment or the storage options)")
    return StorageError(action, url, f"{type(error).__name__}: {message}" if message else type(error).__name__)


def url_scheme(url: str) -> str | None:
    """The scheme of `url` ("s3", "file", ...) or None for a plain local path."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


def is_local(url: str) -> bool:
    """True for plain paths and `file://` URLs."""
    return url_scheme(url) in (None, "file")


def join_url(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URL with "/" (`join_url("s3://b/out", "meta", "x.json")`)."""
    url = base
    for part in parts:
        url = url.rstrip("/") + "/" + part.lstrip("/")
    return url


def parent_url(url: str) -> str:
    """The folder holding `url` (`s3://b/specs/a.json` -> `s3://b/specs`)."""
    scheme = url_scheme(url)
    if scheme is None:
        return os.path.dirname(os.path.abspath(url))
    prefix = f"{scheme}://"
    return prefix + posixpath.dirname(url[len(prefix) :].rstrip("/"))


def resolve_url(path: str, base: str | None = None) -> str:
    """Make a relative local path absolute against `base` (a folder path or URL), else the working directory.

    URLs with a scheme and absolute local paths are returned unchanged; `~` is expanded.
    """
    if url_scheme(path) is not None:
        return path
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    if base is None or is_local(base):
        folder = os.getcwd() if base is None else _local_path(base)
        return os.path.normpath(os.path.join(folder, path))
    return join_url(base, path)


def local_file_digest(url: str) -> str | None:
    """ "sha256:{hex}" of the bytes of the local file at `url` (a path or `file://` URL), or None if it cannot be
    read. Cached per process by (path, size, modification time): one read per file and process."""
    path = _local_path(url)
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _file_digest(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _file_digest(path: str, size: int, mtime_ns: int) -> str | None:  # size and mtime_ns: the cache key
    try:
        with open(path, "rb") as f:
            return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def parse_storage_options(pairs: Iterable[str]) -> dict | None:
    """Storage options from `KEY=VALUE` strings, as the jobs' repeatable `--storage-option` flag takes them.

    VALUE is parsed as JSON when it can be (`anon=true` -> True), else kept as a string; dotted keys nest
    (`client_kwargs.endpoint_url=http://...` -> `{"client_kwargs": {"endpoint_url": ...}}`); later pairs win.
    Returns None for no pairs; raises ValueError for a pair without `=` or without a key.
    """
    options: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        *parents, leaf = key.split(".")
        target = options
        for part in parents:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[leaf] = value
    return options or None


def _write_local_atomic(path: str, data: bytes) -> None:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp_path = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    # os.open's mode goes through the umask, as for any new file (mkstemp would make it 0600)
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        os.unlink(tmp_path)
        raise


def _local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else os.path.expanduser(url)
