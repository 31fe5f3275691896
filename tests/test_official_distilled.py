"""cosmos-ray's few-step sampler against the official distilled one (tests/golden/distilled.json, written by
tools/official_golden.py from the 1.5.0 tree: `Video2WorldModelDistillDMD2TrigFlow.generate_samples_from_batch`
with the distilled experiment's composed config and conditioner, the official tiny distilled net)."""

from __future__ import annotations

from typing import cast

import pytest
import torch

from cosmos_ray.core.registry import get_model
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.generator import Generator
from cosmos_ray.loading import ModelInfo
from cosmos_ray.models.text import TextEncoder
from cosmos_ray.sampling.few_step import FewStepSampler, initial_noise, sample_few_step
from tests.test_official_dit import our_dit
from tests.test_official_golden import load, unpack
from tools.golden.distilled import distilled_embedding, nonfinite_velocity
from tools.official_golden import tiny_models

GOLDEN = load("distilled")
TEXT2WORLD = sorted(name for name in GOLDEN["cases"] if name.startswith("text2world"))


class FixedEmbedding:
    def encode(self, prompts):
        assert prompts == ["prompt"]  # the distilled sampler encodes no negative prompt
        return distilled_embedding()


def generator(dtype: torch.dtype) -> Generator:
    height, width = GOLDEN["resolution"]
    return Generator(
        our_dit("2B-distilled", dtype),
        tiny_models()[1],
        cast(TextEncoder, FixedEmbedding()),  # only `encode` is called
        ModelInfo(get_model("2B/distilled"), "tiny", (height, width), GOLDEN["state_t"]),
        FewStepSampler(),
        device=torch.device("cpu"),
        dtype=dtype,
    )


@pytest.mark.parametrize("name", TEXT2WORLD)
def test_distilled_text2world_matches_official(name):
    """Noise, the four TrigFlow times, the denoiser's float64 coefficients, the net's inputs and timesteps in
    the model dtype, re-noising with the initial noise: the official latents bit for bit, in bf16 and float32."""
    _, dtype_name, _ = name.split("/")
    case = GOLDEN["cases"][name]
    gen = generator(getattr(torch, dtype_name))
    seen: list[torch.Tensor] = []
    handle = gen.dit.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    try:
        spec = GenerationSpec(
            inference_type="text2world", name=name, prompt="prompt", seed=case["seed"], num_steps=case["num_steps"]
        )
        latents = gen.generate_latents(spec)
    finally:
        handle.remove()
    assert torch.equal(latents, unpack(case["latents"]))
    # the timesteps the official net got (c_noise cast to the model dtype), value for value
    assert len(seen) == len(case["calls"])
    for ours, official in zip(seen, case["calls"]):
        assert official["timesteps_dtype"] == f"torch.{dtype_name}" and official["x_dtype"] == f"torch.{dtype_name}"
        assert torch.equal(ours.float(), unpack(official["timesteps"]).float().expand_as(ours))


def test_distilled_nan_to_num_matches_official():
    """A net returning NaN / +inf / -inf: the official loop finishes and ends with `torch.nan_to_num`."""
    case = GOLDEN["cases"]["nan_to_num"]
    height, width = GOLDEN["resolution"]
    shape = (1, 16, GOLDEN["state_t"], height // 8, width // 8)
    latents = sample_few_step(
        lambda x, timesteps, crossattn_emb, *, condition_mask: nonfinite_velocity(x),
        initial_noise(case["seed"], shape, "cpu"),
        distilled_embedding(),
        config=FewStepSampler().config,
        num_steps=case["num_steps"],
        timestep_scale=1.0,
    )
    official = unpack(case["latents"])
    assert torch.isfinite(official).all() and (official.abs() == torch.finfo(torch.float32).max).any()
    assert torch.equal(latents, official)
