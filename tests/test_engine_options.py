"""One options object for an engine run (`EngineOptions`): every option reaches the engine from every entry point,
under one name, and a new option is covered here without a list to update."""

from __future__ import annotations

import dataclasses

import pytest

import bench.autoregressive
import bench.batch
import bench.clip
import bench.precision
from cosmos_ray.core.offload_config import OffloadConfig
from cosmos_ray.core.options import ATTENTION_BACKENDS, EngineOptions
from cosmos_ray.models.attention import BACKENDS
from jobs import generate, local
from jobs.options import SOURCE_FIELDS
from pipelines.serve.args import ServeArgs

GENERIC = [field for field in dataclasses.fields(EngineOptions) if field.name not in SOURCE_FIELDS]


def other_value(field: dataclasses.Field) -> tuple[object, list[str]]:
    """A value other than the field's default, and the command-line words that set it."""
    flag = "--" + field.name.replace("_", "-")
    if field.metadata["repeat"] is not None:  # a tuple, one flag per value
        repeat_flag, parse = field.metadata["repeat"]
        values = ["3", "5"] if parse is int else ["memory://engine-option", "memory://other:0.5"]
        return tuple(map(parse, values)), [repeat_flag, values[0], repeat_flag, values[1]]
    if field.type in ("bool", "bool | None"):
        return True, [flag]
    if field.type == "int":
        assert isinstance(field.default, int)
        return field.default + 2, [flag, str(field.default + 2)]
    choices = field.metadata["choices"]
    if choices is not None:
        value = next(choice for choice in choices() if choice != field.default)
        return value, [flag, value]
    return "memory://engine-option", [flag, "memory://engine-option"]


# Each entry point that builds an engine, as (name, parse the words into its EngineOptions).
ENTRY_POINTS = {
    "jobs.local": lambda words: local.parse_args(["-i", "s.json", "-o", "out", *words]).engine,
    "jobs.generate": lambda words: generate.parse_args(["--manifest", "m", "--output", "o", *words]).engine,
    "bench.batch": lambda words: bench.batch.parse_args(words).engine,
    "bench.clip": lambda words: bench.clip.parse_args(words).engine,
    "bench.autoregressive": lambda words: bench.autoregressive.parse_args(words).engine,
    "bench.precision": lambda words: bench.precision.parse_args(words).engine,
}


@pytest.mark.parametrize("field", GENERIC, ids=lambda field: field.name)
@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_every_option_reaches_the_engine_from_every_command_line(entry_point, field):
    value, words = other_value(field)
    options = ENTRY_POINTS[entry_point](["--preset", "tiny", *words])
    assert getattr(options, field.name) == value


@pytest.mark.parametrize("field", GENERIC, ids=lambda field: field.name)
def test_every_option_is_a_serve_argument_of_the_same_name(field):
    """A field added to EngineOptions without its ServeArgs field fails here (ServeArgs forbids unknown keys)."""
    value, words = other_value(field)
    repeat = field.metadata["repeat"]
    argument: object
    if repeat is not None:  # Serve takes the flags' texts, and integers as JSON numbers
        argument = [int(word) for word in words[1::2]] if repeat[1] is int else words[1::2]
    else:
        argument = value
    assert getattr(ServeArgs(**{field.name: argument}).engine_options(), field.name) == value


def test_the_weights_and_offloading_reach_the_engine():
    words = ["--checkpoint-dir", "/ckpt", "--offload-diffusion-model", "--offload_text_encoder"]
    for entry_point in ("jobs.local", "jobs.generate"):
        options = ENTRY_POINTS[entry_point](words)
        assert options.source == "/ckpt"
        assert options.offload == OffloadConfig(diffusion_model=True, text_encoder=True)
    served = ServeArgs(checkpoint_dir="/ckpt", offload_tokenizer=True).engine_options()
    assert (served.source, served.offload) == ("/ckpt", OffloadConfig(tokenizer=True))


def test_bad_combinations_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="attention_backend must be one of auto, cudnn"):
        EngineOptions(attention_backend="sage")
    with pytest.raises(ValueError, match="preset 'random-14B' has the released 14B shapes"):
        EngineOptions(source="random-14B")
    with pytest.raises(SystemExit):  # a usage error on the command line
        local.parse_args(["-i", "s.json", "-o", "out", "--preset", "random-14B", "--model", "2B/distilled"])


def test_the_attention_backends_offered_are_the_engines():
    assert set(ATTENTION_BACKENDS) == {"auto", *BACKENDS}


def test_the_engine_is_built_from_the_options():
    from cosmos_ray.families import load_engine
    from cosmos_ray.generator import Generator

    engine = load_engine(EngineOptions(attention_backend="math", dtype="float32"), device="cpu")
    assert isinstance(engine, Generator)
    assert engine.dit.attention_backend == "math"
    assert str(engine.dtype) == "torch.float32"
