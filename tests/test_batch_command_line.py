"""The batch job's command line (`python -m jobs.generate`) as parsed: its help, the model, offload, storage
shard and sink options, and bad arguments (exit 2). (Failing fast before Ray starts: test_generate_job.py.)"""

import pytest

from cosmos_ray.core.offload_config import OffloadConfig
from cosmos_ray.core.shards import ShardConfig
from jobs.generate import config_of, parse_args
from jobs.generate import main as generate_main
from pipelines.batch.sinks import SINKS, Sink, SinkConfig, WebDatasetSink, make_sinks

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate_main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in (
        "--manifest",
        "--output",
        "--preset",
        "--checkpoint-dir",
        "--dtype",
        "--compile",
        "--gpus-per-group",
        "--groups",
        "--autoscale",
        "--embedding-cache",
        "--limit",
        "--num-generations",
        "--shard-size",
        "--shard-samples",
        "--run-id",
        "--storage-option",
        "--address",
        "--logical-gpus",
        "--model",
        "--offload-diffusion-model",
        "--offload-tokenizer",
        "--offload-text-encoder",
        "--schedule-timeout",
        "--max-num-output-frames",
        "--max-pixels",
        "--max-num-steps",
        "--max-cost",
    ):
        assert option in help_text
    for model in ("2B/pre-trained", "2B/post-trained", "2B/distilled", "14B/pre-trained", "14B/post-trained"):
        assert f"  {model}: " in help_text  # each official model with what it is for


def test_model_and_offload_options():
    args = parse_args(
        ["--manifest", "m", "--output", "o", "--preset", "random-14B", "--model", "14B/post-trained"]
        + ["--offload_text_encoder", "--offload-tokenizer"]
    )
    assert (args.engine.model, args.engine.offload) == (
        "14B/post-trained",
        OffloadConfig(tokenizer=True, text_encoder=True),
    )
    assert parse_args(["--manifest", "m", "--output", "o", "--preset", "tiny"]).model == "2B/post-trained"


def test_storage_options_nest_and_parse_json_values():
    args = parse_args(
        [
            "--manifest",
            "m",
            "--output",
            "o",
            "--preset",
            "tiny",
            "--autoscale",
            "2..8",
            "--storage-option",
            "client_kwargs.endpoint_url=http://127.0.0.1:9000",
            "--storage-option",
            "client_kwargs.region_name=us-east-1",
            "--storage-option",
            "anon=true",
        ]
    )
    assert args.autoscale == (2, 8)
    assert args.engine.storage.options == {
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "us-east-1"},
        "anon": True,
    }


@pytest.mark.parametrize(
    "argv, shards",
    [
        ([], None),
        (["--shard-size", "2GiB"], ShardConfig(max_bytes=2 * 2**30)),
        (["--shard-samples", "50"], ShardConfig(max_samples=50)),
        (["--shard-size", "1.5MB", "--shard-samples", "3"], ShardConfig(max_bytes=1_500_000, max_samples=3)),
    ],
)
def test_either_shard_option_turns_sharding_on(argv, shards):
    assert parse_args(["--manifest", "m", "--output", "o", "--preset", "tiny", *argv]).shards == shards


@pytest.mark.parametrize(
    "argv",
    [
        ["--autoscale", "3..2"],
        ["--autoscale", "4"],
        ["--groups", "0"],
        ["--groups", "2", "--autoscale", "1..2"],
        ["--storage-option", "no-equals-sign"],
        ["--num-generations", "0"],
        ["--num-generations", "3", "--max-num-generations", "2"],
        ["--shard-size", "5 parsecs"],
        ["--shard-size", "0MB"],
        ["--shard-samples", "0"],
        ["--logical-gpus", "4", "--address", "auto"],
        ["--model", "2B"],
        ["--preset", "random-2B", "--model", "14B/pre-trained"],
    ],
)
def test_bad_arguments_exit_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--manifest", "m", "--output", "o", "--preset", "tiny", *argv])
    assert exit_info.value.code == 2


class NamedOnly(Sink):
    """A sink that needs nothing but its name (a stand-in for one a user registers)."""


def test_sink_names_a_registered_sink_and_the_shard_options_configure_webdataset(monkeypatch):
    monkeypatch.setitem(SINKS, "test-named", NamedOnly)

    def sinks(*argv: str) -> tuple:
        return config_of(parse_args(["--manifest", "m", "--output", "o", "--preset", "tiny", *argv])).sinks

    assert sinks() == ()
    assert sinks("--sink", "test-named", "--sink", "test-named") == (SinkConfig("test-named"),)
    assert isinstance(make_sinks(sinks("--sink", "test-named"))[0], NamedOnly)
    assert sinks("--sink", "webdataset") == (SinkConfig("webdataset"),)
    (configured,) = sinks("--sink", "webdataset", "--shard-samples", "3")
    assert isinstance(configured, WebDatasetSink) and configured.config == ShardConfig(max_samples=3)
    with pytest.raises(SystemExit):
        parse_args(["--manifest", "m", "--output", "o", "--preset", "tiny", "--sink", "nowhere"])
