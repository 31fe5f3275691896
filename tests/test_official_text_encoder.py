"""cosmos-ray's Reason1 text encoder against the official wrapper (tests/golden/text_encoder.json, written by
tools/official_golden.py: the official TextEncoder + QwenVLBaseModel + Processor built from the 2B experiment's
composed text-encoder config with the tiny preset's widths and the weights of `random_dit_weights`, run by its
own compute_text_embeddings_online; flash-attention -> SDPA; see docs/reference-notes.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cosmos_ray.models.text import TextEncoder, TextEncoderConfig, build_tiny_tokenizer
from tests.test_official_golden import unpack
from tools.golden.dit import random_dit_weights
from tools.golden.text_encoder import summarize

GOLDEN = json.loads((Path(__file__).resolve().parent / "golden" / "text_encoder.json").read_text())
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def our_encoder(dtype: torch.dtype) -> TextEncoder:
    encoder = TextEncoder.from_random(TextEncoderConfig.preset("tiny"), build_tiny_tokenizer(), dtype=dtype)
    state = encoder.model.state_dict()
    state.update(random_dit_weights({name: tuple(value.shape) for name, value in state.items()}))
    encoder.model.load_state_dict(state)
    return encoder


def test_tiny_preset_is_the_fixtures_config():
    config, widths = TextEncoderConfig.preset("tiny"), GOLDEN["widths"]
    assert GOLDEN["embedding_concat_strategy"] == "full_concat"  # what our forward does (torch.cat of the layers)
    assert (config.hidden_size, config.intermediate_size, config.num_layers) == (
        widths["hidden_size"],
        widths["intermediate_size"],
        widths["num_hidden_layers"],
    )
    assert (config.num_heads, config.num_kv_heads, config.vocab_size) == (
        widths["num_attention_heads"],
        widths["num_key_value_heads"],
        widths["vocab_size"],
    )
    assert list(config.mrope_section) == widths["rope_scaling"]["mrope_section"]


def test_tokenization_matches_official():
    """Chat template with the system prompt, no generation prompt, truncation and padding with the pad id to 512."""
    encoder = our_encoder(torch.float32)
    assert encoder.tokenizer.pad_token_id == GOLDEN["pad_id"]
    assert torch.equal(encoder.tokenize(GOLDEN["prompts"]), unpack(GOLDEN["token_ids"]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_embeddings_match_official(dtype):
    case = GOLDEN["cases"][dtype]
    ours = our_encoder(DTYPES[dtype])(unpack(GOLDEN["token_ids"]))
    assert ours.dtype == DTYPES[case["dtype"]] and list(ours.shape) == case["shape"]
    summary = summarize(ours)
    positions, projected = unpack(case["positions"]), unpack(case["projected"])
    if dtype == "bfloat16":  # the same operations in the same order: bit-identical
        assert torch.equal(unpack(summary["positions"]), positions)
        assert summary["sha256"] == case["sha256"]
    else:
        torch.testing.assert_close(unpack(summary["positions"]), positions, rtol=0, atol=1e-6)
    torch.testing.assert_close(unpack(summary["projected"]), projected, rtol=0, atol=1e-6)
