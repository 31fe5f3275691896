"""cosmos-ray against fixtures written by the official Cosmos-Predict2.5 code (tests/golden/, made by
tools/official_golden.py, which runs the official functions; see docs/reference-notes.md).

The official code is not needed here: each fixture holds the official results, the inputs (or how to make
them: the small helpers imported from tools/official_golden.py) and the commit they came from.
"""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch

from cosmos_ray.core.registry import get_model
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.generator import Generator
from cosmos_ray.loading import ModelInfo
from cosmos_ray.models.text import TextEncoder, normalize_per_token
from cosmos_ray.sampling.base import HeldFrames
from cosmos_ray.sampling.guided import GuidedSampler, SamplerConfig, initial_noise, sample
from cosmos_ray.sampling.schedule import make_schedule
from cosmos_ray.sampling.unipc import UniPCSolver
from tools.official_golden import (
    fixed_velocity,
    tiny_embeddings,
    tiny_models,
    toy_velocity,
)

GOLDEN = Path(__file__).resolve().parent / "golden"
ROOT = GOLDEN.parent.parent


def load(piece: str) -> dict:
    return json.loads((GOLDEN / f"{piece}.json").read_text())


def unpack(packed: dict) -> torch.Tensor:
    raw = zlib.decompress(base64.b64decode(packed["data"]))
    if packed["dtype"] == "bfloat16":
        return torch.from_numpy(np.frombuffer(raw, "<u2").copy()).view(torch.bfloat16).reshape(packed["shape"])
    return torch.from_numpy(np.frombuffer(raw, np.dtype(packed["dtype"]).newbyteorder("<")).copy()).reshape(
        packed["shape"]
    )


def test_fixtures_name_their_official_commit():
    for path in GOLDEN.glob("*.json"):
        official = json.loads(path.read_text())["official"]
        assert official["repository"] == "nvidia-cosmos/cosmos-predict2.5" and len(official["commit"]) == 40
        assert official["files"] and all(len(f["commit"]) == 40 for f in official["files"].values()), path.name


# --- schedules and the solver -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(load("schedules")["cases"]))
def test_schedule_and_dit_timesteps_match_official(case):
    variant, num_steps = case.split("/")
    expected = load("schedules")["cases"][case]
    ours = make_schedule(SamplerConfig.preset(variant).schedule, int(num_steps))
    assert list(ours.sigmas) == expected["sigmas"]  # float32 values, the final 0 included
    assert list(ours.timesteps) == expected["timesteps"]  # the integers the DiT gets


@pytest.mark.parametrize("case", sorted(load("unipc")["cases"]))
def test_unipc_steps_match_official(case):
    variant, num_steps = case.split("/")
    expected = load("unipc")["cases"][case]
    schedule = make_schedule(SamplerConfig.preset(variant).schedule, int(num_steps))
    solver = UniPCSolver(schedule.sigmas)
    latents, direction = unpack(expected["start"]), unpack(expected["direction"])
    assert len(expected["steps"]) == schedule.num_evaluations
    for timestep, official in zip(schedule.timesteps, expected["steps"]):
        latents = solver.step(fixed_velocity(latents, timestep, direction), latents)
        torch.testing.assert_close(latents, unpack(official), rtol=1e-5, atol=1e-6)


# --- the sampling loop ------------------------------------------------------------------------------------


class RecordingToyModel:
    """The fixture's toy network behind cosmos-ray's VelocityModel interface."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, timesteps, crossattn_emb, *, condition_mask):
        self.calls.append((timesteps.clone(), condition_mask[:, 0, :, 0, 0].clone()))
        return toy_velocity(x, timesteps, crossattn_emb, condition_mask)


@pytest.mark.parametrize("name", sorted(load("sampling")["cases"]))
def test_sampling_loop_matches_official(name):
    """Initial noise, schedule, timestep quantization, conditional-frame mask, latents and timestep, held
    velocity, guidance and UniPC together: the official loop's latents from the same toy network."""
    golden = load("sampling")
    case = golden["cases"][name]
    num_conditional = case["num_conditional_frames"]
    model = RecordingToyModel()
    latents = sample(
        model,
        initial_noise(case["seed"], tuple(golden["shape"])),
        unpack(golden["prompt"]),
        unpack(golden["negative"]),
        config=SamplerConfig.preset(case["variant"]),
        num_steps=case["num_steps"],
        guidance=case["guidance"],
        held=HeldFrames.leading(unpack(golden["clean_latents"])[:, :, :num_conditional], golden["shape"][2])
        if num_conditional
        else None,
    )
    # bit for bit: the solver's coefficients are the official float32 ones, applied in the official order
    torch.testing.assert_close(latents, unpack(case["latents"]), rtol=0, atol=0)
    official_conditional_passes = case["calls"][::2]  # the official loop calls the net for cond, then uncond
    assert len(model.calls) == len(official_conditional_passes)
    for (timesteps, mask), official in zip(model.calls, official_conditional_passes):
        official_timesteps = unpack(official["timesteps"])  # (1, 1) when all frames share one timestep
        torch.testing.assert_close(timesteps[:1], official_timesteps.expand_as(timesteps[:1]), rtol=0, atol=0)
        torch.testing.assert_close(mask[:1], unpack(official["mask_per_frame"]), rtol=0, atol=0)


class FixedEmbeddings:
    """The fixture's seeded prompt / negative-prompt embeddings in place of the text encoder."""

    def __init__(self):
        self.embeddings = dict(zip(("prompt", "negative"), tiny_embeddings()))

    def encode(self, prompts):
        return torch.cat([self.embeddings[prompt] for prompt in prompts])


@pytest.fixture(scope="module")
def tiny_generator() -> Generator:
    golden = load("tiny_runs")
    dit, vae = tiny_models()
    height, width = golden["resolution"]
    return Generator(
        dit,
        vae,
        cast(TextEncoder, FixedEmbeddings()),  # only `encode` is called
        ModelInfo(get_model("2B/post-trained"), "tiny", (height, width), golden["state_t"]),
        GuidedSampler(SamplerConfig.preset("post-trained")),
        device=torch.device("cpu"),
        dtype=torch.float32,
    )


@pytest.mark.parametrize("kind", ["text2world", "image2world", "video2world"])
def test_whole_tiny_run_matches_official(tiny_generator, kind):
    """Conditioning media read and encoded, sampled and decoded: the official loop, VAE code and media reading
    with the tiny DiT as the network, in float32."""
    case = load("tiny_runs")["cases"][kind]
    spec = golden_spec(kind, case)
    latents = tiny_generator.generate_latents(spec)
    # float32 rounding only: the official loop runs the conditional and unconditional passes as two batches of 1,
    # ours as one batch of 2, and guidance 7 multiplies their difference by 8
    assert rel_err(latents, unpack(case["latents"])) < 1e-5
    video = tiny_generator.decode(latents)
    # The official decode leaves values outside [-1, 1] to its video writer, which clips them; ours clips them
    official_video = unpack(case["video_frames_0_4_8"]).clamp(-1.0, 1.0)
    assert rel_err(video[:, :, ::4], official_video) < 1e-5


def rel_err(ours: torch.Tensor, official: torch.Tensor) -> float:
    return ((ours.double() - official.double()).norm() / official.double().norm()).item()


# --- numerics: VAE statistics, text normalization ---------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_vae_statistics_and_normalization_match_official(dtype):
    """The official tokenizer holds mean and 1 / std in its dtype (bf16 in inference): bit-exact here."""
    case = load("vae")["cases"][dtype]
    vae = tiny_models()[1].to(getattr(torch, dtype))
    mean, inv_std = vae.latent_stats()
    assert torch.equal(mean.flatten(), unpack(case["mean"])) and torch.equal(inv_std.flatten(), unpack(case["inv_std"]))

    official_moments = unpack(case["conv1_output"])  # encode: normalize the official encoder's moments
    handle = vae.conv1.register_forward_hook(lambda module, args, output: official_moments)
    try:
        latents = vae.encode(unpack(case["video"]))
    finally:
        handle.remove()
    assert torch.equal(latents, unpack(case["latents"]))

    seen = []  # decode: what enters the post-quantization conv after de-normalization
    handle = vae.conv2.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        vae.decode(unpack(case["given_latents"]))
    finally:
        handle.remove()
    assert torch.equal(seen[0].contiguous(), unpack(case["denormalized"]))


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_text_embedding_normalization_matches_official(dtype):
    case = load("text_norm")["cases"][dtype]
    ours = normalize_per_token(unpack(case["hidden"]))
    assert ours.dtype == getattr(torch, dtype)
    torch.testing.assert_close(ours, unpack(case["normalized"]), rtol=0, atol=0)


def golden_spec(kind: str, case: dict) -> GenerationSpec:
    """The spec of one whole-run case of a fixture (`tiny_runs`, `end_to_end`): its input, seed, steps, guidance."""
    return GenerationSpec(
        inference_type=kind,
        name=kind,
        prompt="prompt",
        negative_prompt="negative",
        input_path=str(ROOT / case["input"]) if case["input"] else None,
        seed=case["seed"],
        guidance=case["guidance"],
        num_steps=case["num_steps"],
    )
