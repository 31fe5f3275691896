"""The DiT's forward pass beyond parity: fps without fps modulation, bf16 with the reference's fp32 modules,
the prepare/blocks/finalize pieces that context parallelism uses, tracing without graph breaks, and input
errors that name the field."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cosmos_ray.models.attention import attention
from cosmos_ray.models.dit import DiTConfig
from tests.dit_helpers import TINY, random_dit, random_inputs, rel_error


def test_fps_is_ignored_without_fps_modulation():
    model = random_dit()
    inputs = random_inputs(TINY, 1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(**inputs, fps=16), model(**inputs, fps=30))
    modulated = random_dit(dataclasses.replace(TINY, rope_enable_fps_modulation=True))
    with torch.no_grad():
        assert not torch.allclose(modulated(**inputs, fps=16), modulated(**inputs, fps=30))


def test_bf16_keeps_the_reference_fp32_modules_and_stays_close():
    model = random_dit()
    inputs = random_inputs(TINY, 2, 3, 8, 12)
    with torch.no_grad():
        reference = model(**inputs)
    model.cast(torch.bfloat16)
    fp32_params = {id(p) for module in model.fp32_modules() for p in module.parameters()}
    for name, param in model.named_parameters():
        assert param.dtype == (torch.float32 if id(param) in fp32_params else torch.bfloat16), name
    with torch.no_grad():
        out = model(**inputs)
    assert out.dtype == torch.float32  # the final layer runs in float32, as in the reference
    assert rel_error(out, reference) < 3e-2


def test_prepare_blocks_finalize_is_forward_and_attention_is_swappable():
    model = random_dit()
    inputs = random_inputs(TINY, 2, 3, 8, 12)
    calls = []

    def recording_attention(q, k, v):
        calls.append(q.shape)
        return attention(q, k, v)

    with torch.no_grad():
        prepared = model.prepare(**inputs)
        tokens = prepared.x
        for block in model.blocks:
            tokens = block(
                tokens,
                prepared.emb,
                prepared.adaln_lora,
                prepared.context,
                prepared.rope,
                attention_fn=recording_attention,
            )
        assert torch.equal(model.finalize(tokens, prepared), model(**inputs))
        assert calls == [(2, 3 * 4 * 6, TINY.num_heads, TINY.head_dim)] * TINY.num_blocks

        shards = [prepared.select_frames(0, 2), prepared.select_frames(2, 3)]
        assert [s.rope[0].shape[0] for s in shards] == [2 * 24, 24]
        per_shard = torch.cat([model.finalize(s.x, s) for s in shards], dim=2)
        assert rel_error(per_shard, model.finalize(prepared.x, prepared)) < 1e-6  # matmul blocking differs


def test_block_traces_without_graph_breaks():
    model = random_dit()
    prepared = model.prepare(**random_inputs(TINY, 1, 3, 8, 12))
    explanation = torch._dynamo.explain(model.blocks[0])(
        prepared.x, prepared.emb, prepared.adaln_lora, prepared.context, prepared.rope
    )
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(x=torch.zeros(1, 17, 3, 8, 12)), "x:"),
        (dict(x=torch.zeros(1, 16, 3, 7, 12)), "not divisible by the patch size"),
        (dict(timesteps=torch.zeros(2)), "timesteps:"),
        (dict(crossattn_emb=torch.zeros(1, 20, 95)), "crossattn_emb:"),
        (dict(condition_mask=torch.zeros(1, 1, 2, 8, 12)), "condition_mask:"),
        (dict(x=torch.zeros(1, 16, 3, 8, 484)), "exceeds the RoPE table"),
    ],
)
def test_bad_inputs_name_the_field(change, field):
    inputs = random_inputs(TINY, 1, 3, 8, 12) | change
    with pytest.raises(ValueError, match=field):
        random_dit()(**inputs)


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="unknown DiT preset '7B'; expected one of 2B, 14B, tiny"):
        DiTConfig.preset("7B")
