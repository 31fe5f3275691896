"""The `Storage` handle and the URL helpers on local paths, file:// URLs, memory:// and a moto S3 server."""

import io
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cosmos_ray.core import storage
from cosmos_ray.core.storage import Storage


def test_url_scheme_and_is_local():
    assert storage.url_scheme("/a/b") is None
    assert storage.url_scheme("S3://b/k") == "s3"
    assert storage.is_local("file:///a") and storage.is_local("rel/a") and not storage.is_local("gs://b/a")


def test_join_and_parent_url():
    assert storage.join_url("s3://b/out/", "/meta", "x.json") == "s3://b/out/meta/x.json"
    assert storage.join_url("/tmp/out", "videos", "a.mp4") == "/tmp/out/videos/a.mp4"
    assert storage.parent_url("s3://b/specs/a.json") == "s3://b/specs"
    assert storage.parent_url("/x/specs/a.json") == "/x/specs"


def test_resolve_url(tmp_path):
    assert storage.resolve_url("a.mp4", str(tmp_path)) == str(tmp_path / "a.mp4")
    assert storage.resolve_url("../a.mp4", f"file://{tmp_path}/specs") == str(tmp_path / "a.mp4")
    assert storage.resolve_url("media/a.mp4", "s3://b/specs") == "s3://b/specs/media/a.mp4"
    assert storage.resolve_url("/abs/a.mp4", "s3://b/specs") == "/abs/a.mp4"
    assert storage.resolve_url("https://h/a.mp4", str(tmp_path)) == "https://h/a.mp4"
    assert storage.resolve_url("~/a.mp4") == os.path.expanduser("~/a.mp4")


@pytest.mark.parametrize("prefix", ["", "file://"])
def test_local_round_trip_leaves_no_temp_files(tmp_path, prefix):
    url = prefix + storage.join_url(str(tmp_path), "deep", "er", "x.bin")
    assert not Storage().exists(url)
    Storage().write_bytes_atomic(url, b"first")
    Storage().write_bytes_atomic(url, b"second")
    assert Storage().read_bytes(url) == b"second"
    assert Storage().exists(url)
    assert os.listdir(tmp_path / "deep" / "er") == ["x.bin"]


def test_local_failed_write_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    Storage().write_bytes_atomic(str(target), b"old")

    def broken_replace(src, dst):
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk went away"):
        Storage().write_bytes_atomic(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.json"]


def test_storage_options_only_reach_remote_filesystems(tmp_path):
    s3_options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": "http://127.0.0.1:1"}}
    Storage(s3_options).write_bytes_atomic(str(tmp_path / "x"), b"local")
    assert Storage(s3_options).read_bytes(str(tmp_path / "x")) == b"local"


def test_parse_storage_options_nests_dotted_keys_and_parses_json_values():
    options = storage.parse_storage_options(
        [
            "client_kwargs.endpoint_url=http://127.0.0.1:9000",
            "client_kwargs.region_name=us-east-1",
            "anon=true",
            "key=k=with=equals",
            'config_kwargs={"retries": {"max_attempts": 3}}',
            "anon=false",
        ]
    )
    assert options == {
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "us-east-1"},
        "anon": False,
        "key": "k=with=equals",
        "config_kwargs": {"retries": {"max_attempts": 3}},
    }
    assert storage.parse_storage_options([]) is None


@pytest.mark.parametrize("pair", ["no-equals-sign", "=value"])
def test_parse_storage_options_rejects_pairs_without_a_key(pair):
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        storage.parse_storage_options([pair])


def test_glob_urls(tmp_path):
    for name in ("b.json", "a.json", "c.jsonl"):
        Storage().write_bytes_atomic(str(tmp_path / name), b"{}")
    (tmp_path / "dir.json").mkdir()
    assert Storage().glob_urls(str(tmp_path / "*.json")) == [str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    Storage().write_bytes_atomic("memory://glob-test/x.jsonl", b"{}")
    assert Storage().glob_urls("memory://glob-test/*.jsonl") == ["memory:///glob-test/x.jsonl"]


def test_memory_filesystem():
    Storage().write_bytes_atomic("memory://storage-test/a/b.txt", "héllo".encode())
    assert Storage().read_text("memory://storage-test/a/b.txt") == "héllo"


def test_s3_round_trip(s3_bucket):
    root, options = s3_bucket
    store = Storage(options)
    url = storage.join_url(root, "meta", "x.json")
    assert not store.exists(url)
    store.write_bytes_atomic(url, b'{"status": "ok"}')
    assert store.exists(url)
    assert store.read_bytes(url) == b'{"status": "ok"}'
    store.write_bytes_atomic(url, b"replaced")
    assert store.read_text(url) == "replaced"
    assert store.glob_urls(storage.join_url(root, "meta", "*.json")) == [url]


def test_s3_missing_object_raises(s3_bucket):
    root, options = s3_bucket
    with pytest.raises(FileNotFoundError):
        Storage(options).read_bytes(storage.join_url(root, "nope.bin"))


def test_arrow_filesystem_reads_parquet_with_the_storage_options(s3_bucket):
    root, options = s3_bucket
    url = storage.join_url(root, "tables", "t.parquet")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2, 3]}), buffer)
    Storage(options).write_bytes_atomic(url, buffer.getvalue())
    filesystem, path = Storage(options).arrow_filesystem(url)
    assert pq.read_table(path, filesystem=filesystem).column("x").to_pylist() == [1, 2, 3]


@pytest.mark.parametrize("where", ["local", "memory", "s3"])
def test_list_sizes_and_delete(where, tmp_path, s3_bucket):
    root, options = {"local": (str(tmp_path), None), "memory": ("memory://listing", None), "s3": s3_bucket}[where]
    store, folder = Storage(options), storage.join_url(root, "videos")
    assert store.list_sizes(folder) == {}
    store.write_bytes_atomic(storage.join_url(folder, "a.mp4"), b"12345")
    store.write_bytes_atomic(storage.join_url(folder, "sub", "b.mp4"), b"1")  # not directly in it
    assert store.list_sizes(folder) == {"a.mp4": 5}
    store.delete(storage.join_url(folder, "a.mp4"))
    assert store.list_sizes(folder) == {}


def test_the_embedding_cache_reaches_its_bucket_with_the_jobs_storage_options(s3_bucket, monkeypatch):
    """`--embedding-cache s3://...` goes through the job's one Storage, so its --storage-option applies."""
    import torch

    from cosmos_ray.models.text_cache import EmbeddingCache

    root, options = s3_bucket
    url = storage.join_url(root, "cache")
    opened = []
    real_filesystem = Storage.filesystem

    def recording_filesystem(self: Storage, url: str):
        opened.append(self.options)
        return real_filesystem(self, url)

    monkeypatch.setattr(Storage, "filesystem", recording_filesystem)
    embedding = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    EmbeddingCache(url=url, storage=Storage(options)).put("model", "a prompt", embedding)
    stored = EmbeddingCache(url=url, storage=Storage(options)).get("model", "a prompt")  # from the bucket
    assert stored is not None and torch.equal(stored, embedding)
    assert opened == [options, options]


def test_http_inputs_are_off_unless_the_storage_allows_them():
    assert not Storage().may_read("https://example.com/a.png")
    assert Storage(allow_http=True).may_read("https://example.com/a.png")
    assert Storage().may_read("s3://bucket/a.png") and Storage().may_read("/data/a.png")


# --- one-line errors, the write check, file modes -------------------------------------------------------------


def test_new_local_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        Storage().write_bytes_atomic(str(tmp_path / "shared" / "x.mp4"), b"video")
    finally:
        os.umask(old)
    assert (tmp_path / "shared" / "x.mp4").stat().st_mode & 0o777 == 0o644


def test_a_missing_local_file_is_one_line_naming_the_url(tmp_path):
    url = str(tmp_path / "nope.json")
    with pytest.raises(storage.StorageNotFoundError) as caught:
        Storage().read_bytes(url)
    assert isinstance(caught.value, FileNotFoundError)  # callers that look for a missing file still find it
    assert str(caught.value) == f"cannot read {url}: not found"


def test_a_path_through_a_file_is_named(tmp_path):
    (tmp_path / "a-file").write_bytes(b"")
    url = str(tmp_path / "a-file" / "x.json")
    with pytest.raises(storage.StorageError, match=r"^cannot write .*a-file/x.json: a part of the path is a file"):
        Storage().write_bytes_atomic(url, b"{}")


def test_storage_errors_pickle_with_their_fields():
    import pickle

    error = pickle.loads(pickle.dumps(storage.StorageNotFoundError("read", "s3://b/k", "not found")))
    assert type(error) is storage.StorageNotFoundError and str(error) == "cannot read s3://b/k: not found"
    assert (error.action, error.url, error.reason) == ("read", "s3://b/k", "not found")


def test_check_writable_leaves_nothing_behind(tmp_path):
    Storage().check_writable(str(tmp_path / "out"))
    assert (tmp_path / "out").is_dir() and os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize(
    "folder, reason",
    [
        ("a-file", "it is a file, not a folder"),
        ("a-file/out", "a part of the path is a file, not a folder"),
    ],
)
def test_check_writable_refuses_a_file(tmp_path, folder, reason):
    (tmp_path / "a-file").write_bytes(b"")
    url = str(tmp_path / folder)
    with pytest.raises(storage.StorageError) as caught:
        Storage().check_writable(url)
    assert str(caught.value) == f"cannot write to {url}: {reason}"


def test_check_writable_refuses_a_path_that_cannot_be_created():
    with pytest.raises(storage.StorageError, match=r"^cannot write to /proc/cosmos-ray-out: \w"):
        Storage().check_writable("/proc/cosmos-ray-out")


def test_s3_errors_say_what_is_missing(s3_bucket):
    root, options = s3_bucket
    store = Storage(options)
    with pytest.raises(storage.StorageNotFoundError, match=f"^cannot read {root}/media/missing.png: not found$"):
        store.read_bytes(f"{root}/media/missing.png")
    with pytest.raises(storage.StorageError, match="^cannot write to s3://no-such-bucket-4d1c/out: the bucket does"):
        store.check_writable("s3://no-such-bucket-4d1c/out")
    store.check_writable(f"{root}/out")
    assert store.glob_urls(f"{root}/out/*") == []


def test_s3_without_credentials_is_one_line(s3_endpoint, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    options = {"endpoint_url": s3_endpoint.url, "skip_instance_cache": True}
    with pytest.raises(storage.StorageError, match=r"^cannot list s3://b/specs/\*.json: no credentials found"):
        Storage(options).glob_urls("s3://b/specs/*.json")


_FULL_DISK = """
import resource, signal, sys
from cosmos_ray.core.storage import Storage, StorageError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # files take at most 4 KiB: a disk with no room left
Storage().write_bytes_atomic(sys.argv[1] + "/empty", b"")  # what the probe used to write still fits
try:
    Storage().check_writable(sys.argv[1])
except StorageError as error:
    print(error)
"""


def test_check_writable_writes_real_bytes_so_a_full_disk_fails_it(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(tmp_path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == f"cannot write to {tmp_path}: file too large"
    assert sorted(os.listdir(tmp_path)) == ["empty"]  # the probe left nothing behind
