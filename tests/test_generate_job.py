"""The batch job's command line fails fast: what it can check without Ray is checked before Ray starts, and a
job that cannot run says why in one line (exit 1); bad arguments exit 2. No Ray cluster is started here."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from cosmos_ray.core import guardrails
from cosmos_ray.core.manifest import MANIFEST_SCHEMA
from jobs import generate

SPEC = {"inference_type": "text2world", "name": "a", "prompt": "A cube.", "num_output_frames": 9, "num_steps": 2}


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if the job gets as far as starting or joining Ray."""

    def refuse(*args):
        raise AssertionError("the job started Ray before failing")

    monkeypatch.setattr(generate, "_init_ray", refuse)
    monkeypatch.setattr(ray, "init", refuse)
    was_running = ray.is_initialized()  # another test file's session cluster may be up already
    yield
    assert ray.is_initialized() == was_running


@pytest.fixture
def manifest(tmp_path) -> str:
    rows = [{"spec_json": json.dumps(SPEC), "name": "a", "inference_type": "text2world", "source": "s.jsonl:1"}]
    path = tmp_path / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), path)
    return str(path)


def run_job(argv: list[str], capsys) -> tuple[int, str]:
    status = generate.main([*argv, "--preset", "tiny", "--logical-gpus", "2"])
    return status, capsys.readouterr().err


def test_a_preset_that_does_not_exist_is_a_usage_error(capsys, no_ray):
    with pytest.raises(SystemExit) as exit_info:
        generate.main(["--manifest", "m", "--output", "o", "--preset", "tinny"])
    assert exit_info.value.code == 2
    assert (
        "argument --preset: invalid choice: 'tinny' (choose from 'random-14B', 'random-2B', 'tiny')"
        in capsys.readouterr().err
    )


def test_a_missing_manifest_stops_before_ray(tmp_path, capsys, no_ray):
    missing = tmp_path / "missing.parquet"
    status, err = run_job(["--manifest", str(missing), "--output", str(tmp_path / "out")], capsys)
    assert (status, err) == (1, f"error: cannot read {missing}: not found\n")


def test_a_file_that_is_not_a_manifest_stops_before_ray(tmp_path, capsys, no_ray):
    other = tmp_path / "specs.parquet"
    pq.write_table(pa.table({"prompt": ["x"]}), other)
    status, err = run_job(["--manifest", str(other), "--output", str(tmp_path / "out")], capsys)
    assert status == 1
    assert (
        err
        == f"error: {other} is not a cosmos-ray manifest: missing column(s) inference_type, name, source, spec_json\n"
    )


def test_an_output_that_is_a_file_stops_before_ray(tmp_path, manifest, capsys, no_ray):
    output = tmp_path / "out.mp4"
    output.write_bytes(b"")
    status, err = run_job(["--manifest", manifest, "--output", str(output)], capsys)
    assert (status, err) == (1, f"error: cannot write to {output}: it is a file, not a folder\n")


def test_an_output_that_cannot_be_written_stops_before_ray(manifest, capsys, no_ray):
    status, err = run_job(["--manifest", manifest, "--output", "/proc/cosmos-ray-out"], capsys)
    assert status == 1
    assert err.startswith("error: cannot write to /proc/cosmos-ray-out: ") and err.count("\n") == 1


def test_a_bucket_that_does_not_exist_stops_before_ray(s3_endpoint, manifest, capsys, no_ray):
    options = ["--storage-option", f"endpoint_url={s3_endpoint.url}"]
    status, err = run_job(["--manifest", manifest, "--output", "s3://no-such-bucket-7e2a/run", *options], capsys)
    assert (status, err) == (1, "error: cannot write to s3://no-such-bucket-7e2a/run: the bucket does not exist\n")


def test_an_unwritable_embedding_cache_stops_before_ray(tmp_path, manifest, capsys, no_ray):
    argv = ["--manifest", manifest, "--output", str(tmp_path / "out"), "--embedding-cache", "/proc/cosmos-ray-cache"]
    status, err = run_job(argv, capsys)
    assert status == 1 and err.startswith("error: cannot write to /proc/cosmos-ray-cache: ")


@pytest.mark.parametrize("flag", ["--checkpoint-path", "--lora"])
def test_a_missing_checkpoint_or_adapter_stops_before_ray(tmp_path, manifest, capsys, no_ray, flag):
    argv = ["--manifest", manifest, "--output", str(tmp_path / "out"), flag, str(tmp_path / "mine.pt")]
    status, err = run_job(argv, capsys)
    assert status == 1 and err.startswith(f"error: cannot read {tmp_path / 'mine.pt'}: not found")


@pytest.mark.parametrize(
    "argv",
    [["--schedule-timeout", "0"], ["--max-pixels", "0"], ["--max-num-steps", "x"], ["--max-cost", "0"]],
)
def test_bad_limits_and_timeouts_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate.parse_args(["--manifest", "m", "--output", "o", "--preset", "tiny", *argv])
    assert exit_info.value.code == 2


def test_the_limit_flags_reach_the_job(tmp_path):
    args = generate.parse_args(
        ["--manifest", "m", "--output", "o", "--preset", "tiny", "--max-num-steps", "40", "--schedule-timeout", "60"]
        + ["--max-cost", "64.5"]
    )
    config = generate.config_of(args)
    assert config.limits.max_num_steps == 40 and config.limits.max_pixels == 1920 * 1088
    assert config.limits.max_cost == 64.5  # an operator raises the cost limit
    assert config.schedule_timeout_s == 60 and config.groups is None


def test_gpus_per_rank_lets_replicas_of_one_gpu_share_it(capsys):
    base = ["--manifest", "m", "--output", "o", "--preset", "tiny"]
    group = generate.config_of(generate.parse_args([*base, "--gpus-per-rank", "0.25"])).group
    assert (group.gpus_per_rank, group.gpus, group.bundles) == (0.25, 0.25, [{"GPU": 0.25, "CPU": 1.0}])
    for argv in (
        ["--gpus-per-rank", "0"],
        ["--gpus-per-rank", "1.5"],
        ["--gpus-per-rank", "0.5", "--gpus-per-group", "2"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            generate.parse_args([*base, *argv])
        assert exit_info.value.code == 2
    assert "shares a GPU between replicas of one GPU; pass --gpus-per-group 1" in capsys.readouterr().err


def test_guardrails_default_to_on_with_a_checkpoint_and_off_with_a_preset():
    def setting(*argv: str) -> str:
        return str(
            generate.config_of(generate.parse_args(["--manifest", "m", "--output", "o", *argv])).guardrail_setting
        )

    assert setting("--preset", "tiny").startswith("guardrails off (default for a random-weight preset")
    assert setting("--checkpoint-dir", "/ckpt").startswith("guardrails on (default with NVIDIA weights")
    assert setting("--preset", "tiny", "--guardrails") == "guardrails on (--guardrails)"
    assert "NVIDIA Open Model License" in setting("--checkpoint-dir", "/ckpt", "--no-guardrails")


def test_guardrails_without_the_package_stop_before_ray(manifest, tmp_path, capsys, no_ray, monkeypatch):
    monkeypatch.setattr(guardrails.importlib.util, "find_spec", lambda name: None)
    status, err = run_job(["--manifest", manifest, "--output", str(tmp_path / "out"), "--guardrails"], capsys)
    assert status == 1
    assert err.startswith("error: guardrails are on (--guardrails) but cosmos-guardrail is not installed")
