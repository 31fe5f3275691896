"""The remote-weights cache (`cosmos_ray.core.fetch_cache`): a remote file or folder is fetched once per node, even by
concurrent loaders, verified (size, store checksum), recorded with its SHA-256, and fetched again when it changes."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from cosmos_ray.core.fetch_cache import FetchCache, FetchError, _download
from cosmos_ray.core.storage import Storage, StorageError


def put(url: str, data: bytes, options: dict) -> None:
    Storage(options=options).write_bytes_atomic(url, data)


def test_a_local_path_is_used_in_place_with_its_hash_remembered(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights")
    cache = FetchCache(root=str(tmp_path / "cache"))
    fetched = cache.file(str(path))
    assert (fetched.path, fetched.sha256, fetched.fetched) == (str(path), hashlib.sha256(b"weights").hexdigest(), False)
    assert len(os.listdir(tmp_path / "cache" / "hashes")) == 1
    os.utime(path, ns=(1, 1))  # a changed file (new mtime) is hashed again
    path.write_bytes(b"other")
    assert cache.file(str(path)).sha256 == hashlib.sha256(b"other").hexdigest()
    with pytest.raises(StorageError, match="cannot read .*missing.pt: not found"):
        cache.file(str(tmp_path / "missing.pt"))


def test_a_remote_file_is_fetched_once_verified_and_recorded(s3_bucket, tmp_path):
    root, options = s3_bucket
    data = os.urandom(3 * 2**20 + 17)
    put(f"{root}/ckpt/model_ema_bf16.pt", data, options)
    cache = FetchCache(Storage(options=options), root=str(tmp_path))

    first = cache.file(f"{root}/ckpt/model_ema_bf16.pt")
    assert first.fetched and first.sha256 == hashlib.sha256(data).hexdigest()
    assert first.path.endswith("model_ema_bf16.pt") and open(first.path, "rb").read() == data
    assert not [name for name in os.listdir(os.path.dirname(first.path)) if name.endswith(".part")]

    again = cache.file(f"{root}/ckpt/model_ema_bf16.pt")
    assert (again.path, again.sha256, again.fetched) == (first.path, first.sha256, False)

    put(f"{root}/ckpt/model_ema_bf16.pt", b"retrained", options)  # a new object (new ETag): fetched again
    changed = cache.file(f"{root}/ckpt/model_ema_bf16.pt")
    assert changed.fetched and open(changed.path, "rb").read() == b"retrained"


def _load_after_barrier(barrier, url: str, options: dict, root: str) -> bool:
    barrier.wait()  # both loaders ask at the same moment
    return FetchCache(Storage(options=options), root=root).file(url).fetched


def test_two_concurrent_loaders_fetch_once(s3_bucket, tmp_path):
    root, options = s3_bucket
    put(f"{root}/big.pt", os.urandom(16 * 2**20), options)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        barrier = manager.Barrier(2)
        results = list(
            pool.map(_load_after_barrier, [barrier] * 2, [f"{root}/big.pt"] * 2, [options] * 2, [str(tmp_path)] * 2)
        )
    assert sorted(results) == [False, True]


def test_a_remote_folder_is_fetched_with_its_layout(s3_bucket, tmp_path):
    root, options = s3_bucket
    put(f"{root}/checkpoints/tokenizer.pth", b"vae", options)
    put(f"{root}/checkpoints/text_encoder/config.json", b"{}", options)
    cache = FetchCache(Storage(options=options), root=str(tmp_path))
    local = cache.folder(f"{root}/checkpoints")
    assert sorted(os.listdir(local)) == ["text_encoder", "tokenizer.pth"]  # the remote layout, nothing more
    assert open(os.path.join(local, "tokenizer.pth"), "rb").read() == b"vae"
    assert open(os.path.join(local, "text_encoder", "config.json"), "rb").read() == b"{}"
    assert cache.folder(f"{root}/checkpoints") == local
    only_vae = FetchCache(Storage(options=options), root=str(tmp_path / "other")).folder(
        f"{root}/checkpoints", keep=lambda relative: relative == "tokenizer.pth"
    )
    assert os.listdir(only_vae) == ["tokenizer.pth"]
    with pytest.raises(StorageError, match="no files under it"):
        cache.folder(f"{root}/nothing")


def test_a_download_that_does_not_match_the_store_leaves_nothing(s3_bucket, tmp_path):
    root, options = s3_bucket
    put(f"{root}/model.pt", b"0123456789", options)
    fs, remote = Storage(options=options).filesystem(f"{root}/model.pt")
    info = fs.info(remote)
    target, record = str(tmp_path / "model.pt"), str(tmp_path / "model.pt.json")
    with pytest.raises(FetchError, match="got 10 bytes, the store lists 11"):
        _download(fs, remote, {**info, "size": 11}, target, record, f"{root}/model.pt")
    with pytest.raises(FetchError, match="differs from the store's checksum"):
        _download(fs, remote, {**info, "ETag": '"' + "0" * 32 + '"'}, target, record, f"{root}/model.pt")
    assert os.listdir(tmp_path) == []


def test_a_missing_remote_file_is_one_line(s3_bucket, tmp_path):
    root, options = s3_bucket
    with pytest.raises(StorageError, match=r"^cannot fetch s3://.*/absent.pt: not found$"):
        FetchCache(Storage(options=options), root=str(tmp_path)).file(f"{root}/absent.pt")
