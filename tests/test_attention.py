"""Attention: softmax attention over (batch, sequence, heads, dim) on every backend, and the order of SDPA
backends per device."""

from __future__ import annotations

import math

import pytest
import torch

from cosmos_ray.models.attention import attention, sdpa_backends


def test_attention_is_softmax_attention_over_bshd():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 5, 3, 8, generator=g)
    k, v = torch.randn(2, 7, 3, 8, generator=g), torch.randn(2, 7, 3, 8, generator=g)
    weights = torch.einsum("bqhd,bkhd->bhqk", q, k).div(math.sqrt(8)).softmax(dim=-1)
    expected = torch.einsum("bhqk,bkhd->bqhd", weights, v)
    for backend in ("auto", "math"):
        assert torch.allclose(attention(q, k, v, backend=backend), expected, atol=1e-6)


def test_attention_backend_choice():
    cuda_order = [b.name for b in sdpa_backends("auto", torch.device("cuda"))]
    assert cuda_order == ["CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"]
    assert [b.name for b in sdpa_backends("auto", torch.device("cpu"))] == ["MATH"]
    with pytest.raises(ValueError, match="unknown attention backend 'xformers'"):
        sdpa_backends("xformers", torch.device("cpu"))
