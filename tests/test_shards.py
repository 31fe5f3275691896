"""WebDataset shards and their index, without Ray: packing, the tar layout and byte ranges, the commit order, a
kill between the tar and its index file, shard numbers, and S3."""

import io
import json
import tarfile

import pytest

from cosmos_ray.core.outputs import OutputStore
from cosmos_ray.core.shards import SHARD_INDEX_SCHEMA, ShardConfig, ShardPacker, ShardStore, webdataset_key
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.storage import Storage


def spec(name: str, seed: int = 0) -> GenerationSpec:
    return GenerationSpec.from_dict({"inference_type": "text2world", "name": name, "prompt": "A cube.", "seed": seed})


def commit(store: OutputStore, *specs: GenerationSpec) -> list[str]:
    """Commit a fake video per spec (its bytes name the sample) and return the sample ids."""
    for s in specs:
        store.write_ok(s, f"video of {s.sample_id}".encode() * (1 + s.seed), {"seed": s.seed})
    return [s.sample_id for s in specs]


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name: tar.extractfile(m) for m in tar.getmembers()}
        return {name: file.read() for name, file in files.items() if file is not None}  # None: not a file


# --- packing ------------------------------------------------------------------------------------------------


def test_packer_closes_shards_at_the_sample_limit():
    packer = ShardPacker(ShardConfig(max_samples=2, max_bytes=10**9))
    closed = [packer.add(f"s{i}", 10) for i in range(5)]
    assert closed == [[], [["s0", "s1"]], [], [["s2", "s3"]], []]
    assert packer.rest() == ["s4"] and packer.rest() == []


def test_packer_closes_a_shard_before_the_video_that_would_overflow_it():
    packer = ShardPacker(ShardConfig(max_samples=100, max_bytes=100))
    assert packer.add("a", 60) == [] and packer.add("b", 40) == []  # exactly full is allowed
    assert packer.add("c", 1) == [["a", "b"]]
    assert packer.add("huge", 500) == [["c"]]  # larger than a shard: a shard of its own
    assert packer.add("d", 1) == [["huge"]]
    assert packer.rest() == ["d"]


def test_packer_with_one_sample_per_shard():
    packer = ShardPacker(ShardConfig(max_samples=1, max_bytes=5))
    assert packer.add("a", 3) == [["a"]] and packer.add("b", 9) == [["b"]] and packer.rest() == []


@pytest.mark.parametrize("limits", [{"max_samples": 0}, {"max_bytes": 0}])
def test_shard_limits_must_be_positive(limits):
    with pytest.raises(ValueError, match="shard limits must be at least 1"):
        ShardConfig(**limits)


# --- writing and reading ------------------------------------------------------------------------------------


def test_a_shard_holds_the_committed_video_and_record_of_each_sample(tmp_path):
    store = OutputStore(str(tmp_path))
    ids = commit(store, spec("a.b c"), spec("d", seed=1))
    shards = ShardStore(store)
    index = shards.write_shard("shard-000000.tar", ids)

    data = (tmp_path / "shards" / "shard-000000.tar").read_bytes()
    keys = [webdataset_key(i) for i in ids]
    assert "." not in keys[0] and keys[0].startswith("a_b_c-")  # WebDataset splits names at the first dot
    assert members(data) == {
        name: content
        for key, sample_id in zip(keys, ids)
        for name, content in [
            (f"{key}.mp4", Storage().read_bytes(store.video_url(sample_id))),
            (f"{key}.json", Storage().read_bytes(store.meta_url(sample_id))),
        ]
    }
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert [m.name for m in tar.getmembers()] == [
            f"{keys[0]}.mp4",
            f"{keys[0]}.json",
            f"{keys[1]}.mp4",
            f"{keys[1]}.json",
        ]
    rows = index.to_pylist()
    assert [(r["shard"], r["key"], r["sample_id"], r["name"]) for r in rows] == [
        ("shard-000000.tar", keys[0], ids[0], "a.b c"),
        ("shard-000000.tar", keys[1], ids[1], "d"),
    ]
    for row in rows:  # the byte ranges read each member without reading the tar
        video = data[row["mp4_offset"] : row["mp4_offset"] + row["mp4_size"]]
        record = json.loads(data[row["json_offset"] : row["json_offset"] + row["json_size"]])
        assert video == Storage().read_bytes(store.video_url(row["sample_id"]))
        assert record["sample_id"] == row["sample_id"] and record["status"] == "ok"
    assert shards.read_index() == index and index.schema == SHARD_INDEX_SCHEMA
    assert shards.committed() == ["shard-000000.tar"]
    assert shards.sharded({*ids, "other"}) == set(ids)


def test_the_index_file_is_written_after_the_tar(tmp_path, monkeypatch):
    store = OutputStore(str(tmp_path))
    ids = commit(store, spec("a"))
    written = []
    real_write = Storage.write_bytes_atomic

    def recording_write(self, url, *args):
        written.append(url)
        real_write(self, url, *args)

    monkeypatch.setattr(Storage, "write_bytes_atomic", recording_write)
    ShardStore(store).write_shard("shard-000000.tar", ids)
    assert [url.removeprefix(str(tmp_path)) for url in written] == [
        "/shards/shard-000000.tar",
        "/shards/index/shard-000000.parquet",
    ]


def test_a_sample_that_is_not_done_is_refused_and_nothing_is_written(tmp_path):
    store = OutputStore(str(tmp_path))
    ids = commit(store, spec("a"))
    store.write_failure(spec("b"), "boom")
    with pytest.raises(ValueError, match=r"sample b-\w+ is not done \(its record says 'failed'\)"):
        ShardStore(store).write_shard("shard-000000.tar", [*ids, spec("b").sample_id])
    assert not (tmp_path / "shards").exists()


def test_a_kill_between_the_tar_and_its_index_leaves_nothing_committed_and_the_next_run_cleans_up(
    tmp_path, monkeypatch
):
    store = OutputStore(str(tmp_path))
    ids = commit(store, spec("a"), spec("b"))
    shards = ShardStore(store)
    shards.write_shard("shard-000000.tar", ids[:1])

    real_write = Storage.write_bytes_atomic

    def killed_before_the_index(self, url, data):
        if url.endswith(".parquet"):
            raise KeyboardInterrupt  # the process dies here: the tar is written, its index file is not
        real_write(self, url, data)

    monkeypatch.setattr(Storage, "write_bytes_atomic", killed_before_the_index)
    with pytest.raises(KeyboardInterrupt):
        shards.write_shard("shard-000001.tar", ids[1:])
    monkeypatch.setattr(Storage, "write_bytes_atomic", real_write)

    assert (tmp_path / "shards" / "shard-000001.tar").exists()
    assert shards.committed() == ["shard-000000.tar"] and shards.sharded(set(ids)) == {ids[0]}
    assert shards.remove_uncommitted() == ["shard-000001.tar"]
    assert sorted(p.name for p in (tmp_path / "shards").glob("*.tar")) == ["shard-000000.tar"]
    assert next(shards.new_names()) == "shard-000001.tar"  # the number is free again


def test_new_shard_names_fill_the_gaps_first(tmp_path):
    store = OutputStore(str(tmp_path))
    ids = commit(store, spec("a"), spec("b"))
    shards = ShardStore(store)
    shards.write_shard("shard-000001.tar", ids[:1])
    shards.write_shard("shard-000003.tar", ids[1:])
    names = shards.new_names()
    assert [next(names) for _ in range(3)] == ["shard-000000.tar", "shard-000002.tar", "shard-000004.tar"]
    assert shards.read_index().column("shard").to_pylist() == ["shard-000001.tar", "shard-000003.tar"]


def test_video_sizes_come_from_one_listing(tmp_path):
    store = OutputStore(str(tmp_path))
    ids = commit(store, spec("a"), spec("b", seed=2))
    sizes = ShardStore(store).video_sizes({*ids, "missing"})
    assert sizes == {i: len(Storage().read_bytes(store.video_url(i))) for i in ids}


def test_an_output_root_without_shards(tmp_path):
    shards = ShardStore(OutputStore(str(tmp_path)))
    assert shards.committed() == [] and shards.remove_uncommitted() == [] and shards.sharded({"a"}) == set()
    assert shards.read_index().num_rows == 0 and next(shards.new_names()) == "shard-000000.tar"


def test_shards_on_s3(s3_bucket):
    root, options = s3_bucket
    store = OutputStore(f"{root}/out", Storage(options))
    ids = commit(store, spec("a"), spec("b"))
    shards = ShardStore(store)
    shards.write_shard("shard-000000.tar", ids)
    Storage(options).write_bytes_atomic(shards.shard_url("shard-000001.tar"), b"a killed run's tar")
    assert shards.remove_uncommitted() == ["shard-000001.tar"]
    data = Storage(options).read_bytes(shards.shard_url("shard-000000.tar"))
    assert sorted(members(data)) == sorted(f"{webdataset_key(i)}.{ext}" for i in ids for ext in ("mp4", "json"))
    assert shards.sharded(set(ids)) == set(ids)
