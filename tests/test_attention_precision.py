"""The attention-precision option: its flags and checks, and which DiT calls the 8-bit kernel gets.

The 8-bit kernels themselves run on GPUs only (their own tests are marked `gpu`). Here a stand-in kernel takes
the place of one: exact attention of the queries halved, head-local like a real kernel, so it changes the
output (a call that went to it is visible) and stays exact under Ulysses. It lets the schedule (evaluations and
blocks kept bf16), the engine path (options -> Generator -> DiT) and torch.compile be checked on a CPU.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from cosmos_ray.core.attention_precision import BF16_ATTENTION, AttentionPrecision
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.generator import Generator
from cosmos_ray.models import attention_8bit
from cosmos_ray.models.attention import attention
from cosmos_ray.models.attention_8bit import QuantizedSelfAttention
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
from jobs.options import add_engine_options, engine_options_of
from pipelines.serve.args import ServeArgs

CALLS: list[tuple[int, ...]] = []  # the shapes the stand-in kernel was called with


def check_supported(q: torch.Tensor) -> None:
    """The stand-in runs anywhere."""


def halved_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The stand-in 8-bit kernel: exact attention of q / 2 (a different, head-local result)."""
    CALLS.append(tuple(q.shape))
    return attention(q / 2, k, v)


@pytest.fixture
def stand_in(monkeypatch):
    """The "int8" kernel replaced by the stand-in; the calls it gets."""
    monkeypatch.setitem(attention_8bit.KERNELS, "int8", (__name__, "halved_query_attention"))
    CALLS.clear()
    return CALLS


# ------------------------------------------------------------------------------------------- the settings


@pytest.mark.parametrize(
    ("precision", "expected"),
    [
        (BF16_ATTENTION, [False] * 6),
        (AttentionPrecision("int8"), [True] * 6),
        (AttentionPrecision("int8", 1, 1), [False, True, True, True, True, False]),
        (AttentionPrecision("int8", 2, 0), [False, False, True, True, True, True]),
        (AttentionPrecision("int8", 4, 3), [False] * 6),
    ],
)
def test_the_schedule_keeps_the_first_and_last_evaluations_in_bf16(precision, expected):
    assert [precision.quantizes_evaluation(i, 6) for i in range(6)] == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"attention_precision": "int4"}, "attention_precision must be one of bf16, int8, fp8, sage2, got 'int4'"),
        ({"attention_bf16_first_steps": -1}, "attention_bf16_first_steps must be 0 or more, got -1"),
        ({"attention_bf16_blocks": (3, -2)}, "attention_bf16_blocks must be block indices"),
    ],
)
def test_engine_options_refuse_a_bad_attention_field_by_name(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EngineOptions(**fields)


def test_the_flags_and_the_serve_arguments_give_the_same_precision():
    parser = argparse.ArgumentParser()
    add_engine_options(parser, default_preset="tiny")
    argv = ["--attention-precision", "int8", "--attention-bf16-first-steps", "2", "--attention-bf16-last-steps", "0"]
    argv += ["--attention-bf16-block", "0", "--attention-bf16-block", "27"]
    from_flags = engine_options_of(parser, parser.parse_args(argv)).attention()
    serve = ServeArgs(
        attention_precision="int8",
        attention_bf16_first_steps=2,
        attention_bf16_last_steps=0,
        attention_bf16_blocks=[0, 27],
    )
    assert from_flags == serve.engine_options().attention() == AttentionPrecision("int8", 2, 0, (0, 27))
    assert str(from_flags) == "int8 (bf16: first 2, last 0 evaluations, blocks 0,27)"
    assert not EngineOptions().attention().quantized and str(EngineOptions().attention()) == "bf16"


def test_a_bad_precision_flag_is_a_usage_error_listing_the_kernels(capsys):
    parser = argparse.ArgumentParser()
    add_engine_options(parser, default_preset="tiny")
    with pytest.raises(SystemExit):
        parser.parse_args(["--attention-precision", "int4"])
    err = capsys.readouterr().err
    assert "--attention-precision: invalid choice: 'int4'" in err
    assert all(name in err.split("choose from")[1] for name in ("bf16", "int8", "fp8", "sage2"))


# ------------------------------------------------------------------------------------------- the DiT calls


def _tiny_dit() -> MiniTrainDiT:
    torch.manual_seed(0)
    return MiniTrainDiT(DiTConfig.preset("tiny")).eval().requires_grad_(False)


def _inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return dict(
        x=torch.randn(2, 16, 3, 8, 12, generator=gen),
        timesteps=torch.full((2,), 700.0),
        crossattn_emb=torch.randn(2, 16, 96, generator=gen),
    )


def test_blocks_kept_in_bf16_and_the_rest_on_the_kernel(stand_in):
    dit = _tiny_dit()
    blocks = dit.cfg.num_blocks
    bf16 = dit(**_inputs())
    dit.quantized_attention = QuantizedSelfAttention(AttentionPrecision("int8", bf16_blocks=(0,)))
    dit.quantized_attention.evaluation(0, 1)
    quantized = dit(**_inputs())
    assert len(stand_in) == blocks - 1  # self-attention only; cross-attention stays in the model dtype
    assert not torch.allclose(quantized, bf16)
    dit.quantized_attention.evaluation(0, 1)
    dit.quantized_attention = QuantizedSelfAttention(AttentionPrecision("int8", bf16_blocks=tuple(range(blocks))))
    dit.quantized_attention.evaluation(0, 1)
    torch.testing.assert_close(dit(**_inputs()), bf16, rtol=0, atol=0)


def test_compiled_blocks_call_the_kernel_through_the_custom_op(stand_in):
    dit = _tiny_dit()
    dit.quantized_attention = QuantizedSelfAttention(AttentionPrecision("int8"))
    dit.quantized_attention.evaluation(0, 1)
    eager = dit(**_inputs())
    calls = len(stand_in)
    dit.compile_blocks(dynamic=False)
    compiled = dit(**_inputs())
    assert len(stand_in) == 2 * calls  # the compiled graph calls the op; dynamo did not inline the kernel away
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------- the whole engine


SPEC = GenerationSpec(name="p", inference_type="text2world", prompt="a red block", num_steps=3, seed=5)


def _frames(options: EngineOptions) -> tuple[np.ndarray, Generator]:
    generator = Generator.from_options(options, device="cpu")
    result = generator(SPEC.generations()[0])
    assert result is not None  # one process: rank 0
    return result.frames, generator


def test_the_generator_runs_the_kernel_where_the_schedule_says(stand_in):
    bf16, _ = _frames(EngineOptions(source="tiny", model="2B/post-trained"))
    options = EngineOptions(
        source="tiny",
        model="2B/post-trained",
        attention_precision="int8",
        attention_bf16_first_steps=1,
        attention_bf16_last_steps=1,
        attention_bf16_blocks=(1,),
    )
    quantized, generator = _frames(options)
    evaluations = generator.sampler.num_evaluations(SPEC.num_steps)
    assert len(stand_in) == (evaluations - 2) * (generator.dit.cfg.num_blocks - 1)
    assert not np.array_equal(quantized, bf16)
    result = generator(SPEC.generations()[0])
    assert result is not None and result.metadata["attention"] == "int8 (bf16: first 1, last 1 evaluations, blocks 1)"


def test_a_schedule_that_keeps_every_evaluation_in_bf16_gives_the_bf16_video(stand_in):
    bf16, _ = _frames(EngineOptions(source="tiny", model="2B/post-trained"))
    options = EngineOptions(
        source="tiny", model="2B/post-trained", attention_precision="int8", attention_bf16_first_steps=99
    )
    frames, _ = _frames(options)
    assert stand_in == []
    np.testing.assert_array_equal(frames, bf16)


def test_a_kernel_that_cannot_run_here_is_refused_before_the_models_load(monkeypatch):
    loaded = []
    monkeypatch.setattr("cosmos_ray.loading._random_models", lambda *a, **k: loaded.append(1))
    with pytest.raises(RuntimeError, match=r"attention_precision 'sage2' cannot run here: SageAttention 2 is not"):
        Generator.from_options(EngineOptions(source="tiny", attention_precision="sage2"), device="cpu")
    assert loaded == []
