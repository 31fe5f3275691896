"""The guided sampling loop: parity with diffusers' Cosmos2_5_PredictBasePipeline on a tiny random DiT and VAE,
then, on a recording stand-in model, guidance batching and formula, conditional frames held clean, the
pre-trained variant, progress, errors, and the initial noise."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel

from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
from cosmos_ray.models.vae import VAEConfig, WanVAE
from cosmos_ray.sampling.base import HeldFrames, SamplingError
from cosmos_ray.sampling.guided import SamplerConfig, initial_noise, sample
from cosmos_ray.sampling.schedule import ScheduleConfig, make_schedule
from tests.oracles import diffusers_pipeline
from tests.sampling_helpers import rel_err

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers + numpy 2

HEIGHT, WIDTH, FRAMES = 32, 48, 9  # pixels; latents (16, 3, 4, 6)
LATENT_SHAPE = (1, 16, 3, HEIGHT // 8, WIDTH // 8)
TEXT_WIDTH = 96  # the tiny DiT's text width


def tiny_pipeline():
    """diffusers' pipeline holding a tiny random DiT and VAE."""
    torch.manual_seed(0)
    return diffusers_pipeline(MiniTrainDiT(DiTConfig.preset("tiny")), WanVAE(VAEConfig.preset("tiny")))


def as_velocity_model(transformer: CosmosTransformer3DModel):
    """diffusers' transformer behind our VelocityModel interface: timesteps scaled to flow time as the
    official net does, a padding mask of zeros."""

    def model(x, timesteps, crossattn_emb, *, condition_mask):
        batch, _, frames, height, width = x.shape
        padding_mask = x.new_zeros(1, 1, height * 8, width * 8)
        return transformer(
            hidden_states=x,
            condition_mask=condition_mask,
            timestep=timesteps.view(batch, 1, frames, 1, 1) * 0.001,
            encoder_hidden_states=crossattn_emb,
            padding_mask=padding_mask,
            return_dict=False,
        )[0]

    return model


def diffusers_conditional_latents(vae: AutoencoderKLWan, video: torch.Tensor, num_latent: int) -> torch.Tensor:
    """The clean latents diffusers' pipeline conditions on: last 1 + 4 (n - 1) frames, padded, encoded, normalized."""
    kept = video[:, :, -(4 * (num_latent - 1) + 1) :]
    padded = torch.cat([kept, kept[:, :, -1:].repeat(1, 1, FRAMES - kept.shape[2], 1, 1)], dim=2)
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    latents = vae.encode(padded).latent_dist.mode()
    return ((latents - mean) * inv_std)[:, :, :num_latent]


@pytest.mark.parametrize("num_latent_conditional, guidance", [(0, 3.0), (1, 7.0), (2, 7.0), (2, 0.0)])
@torch.no_grad()
def test_sampler_matches_diffusers_pipeline(num_latent_conditional, guidance):
    """Same transformer, embeddings and noise: our loop reproduces Cosmos2_5_PredictBasePipeline's latents."""
    pipeline = tiny_pipeline()
    gen = torch.Generator().manual_seed(1)
    prompt, negative = torch.randn(2, 1, 16, TEXT_WIDTH, generator=gen).unbind(0)
    noise = torch.randn(LATENT_SHAPE, generator=gen)
    video = torch.rand(1, 3, FRAMES, HEIGHT, WIDTH, generator=gen) * 2 - 1
    num_steps = 3  # diffusers counts model evaluations: 4

    theirs = pipeline(
        video=video if num_latent_conditional else None,
        prompt_embeds=prompt,
        negative_prompt_embeds=negative,
        height=HEIGHT,
        width=WIDTH,
        num_frames=FRAMES,
        num_inference_steps=num_steps + 1,
        guidance_scale=guidance,
        latents=noise.clone(),
        output_type="latent",
        num_latent_conditional_frames=max(num_latent_conditional, 1),
    ).frames

    conditional = None
    if num_latent_conditional:
        conditional = diffusers_conditional_latents(pipeline.vae, video, num_latent_conditional)
    config = SamplerConfig(ScheduleConfig(quantize_timesteps=False))  # diffusers feeds exact sigmas
    ours = sample(
        as_velocity_model(pipeline.transformer),
        noise,
        prompt,
        negative,
        config=config,
        num_steps=num_steps,
        guidance=guidance,
        held=None if conditional is None else HeldFrames.leading(conditional, noise.shape[2]),
    )
    assert rel_err(ours, theirs) < 1e-5


class RecordingModel:
    """A stand-in velocity model that records its inputs; its velocity is a fixed function of them."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, timesteps, crossattn_emb, *, condition_mask):
        self.calls.append(
            dict(
                x=x.clone(),
                timesteps=timesteps.clone(),
                context=crossattn_emb.clone(),
                condition_mask=condition_mask.clone(),
            )
        )
        text = crossattn_emb.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)
        return 0.5 * x + text + 0.001 * timesteps.view(*timesteps.shape, 1, 1).unsqueeze(1)


def run_recorded(guidance=7.0, conditional=None, variant="post-trained", num_steps=3, progress=None):
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn(LATENT_SHAPE, generator=gen)
    prompt, negative = torch.randn(2, 1, 16, TEXT_WIDTH, generator=gen).unbind(0)
    model = RecordingModel()
    latents = sample(
        model,
        noise,
        prompt,
        negative,
        config=SamplerConfig.preset(variant),
        num_steps=num_steps,
        guidance=guidance,
        held=None if conditional is None else HeldFrames.leading(conditional, noise.shape[2]),
        progress=progress,
    )
    return model, noise, prompt, negative, latents


def test_guidance_batches_cond_and_uncond_and_zero_skips_uncond():
    model, _, prompt, negative, _ = run_recorded(guidance=7.0)
    assert len(model.calls) == 4  # 3 post-trained steps = 4 evaluations
    assert all(call["x"].shape[0] == 2 for call in model.calls)
    torch.testing.assert_close(model.calls[0]["context"], torch.cat([prompt, negative]), rtol=0, atol=0)
    model, _, prompt, _, _ = run_recorded(guidance=0.0)
    assert all(call["x"].shape[0] == 1 for call in model.calls)
    torch.testing.assert_close(model.calls[0]["context"], prompt, rtol=0, atol=0)


def test_guidance_formula_is_cond_plus_g_times_difference():
    """With a model whose velocity depends on the text, g scales the (cond - uncond) difference."""
    _, noise, _, _, at_0 = run_recorded(guidance=0.0, num_steps=1)
    _, _, _, _, at_2 = run_recorded(guidance=2.0, num_steps=1)
    _, _, _, _, at_4 = run_recorded(guidance=4.0, num_steps=1)
    # The velocity is affine in g at every step, and so is the result of the 2-evaluation UniPC run.
    torch.testing.assert_close(at_4 - at_2, at_2 - at_0, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(at_2, at_0)


def test_conditional_frames_are_held_clean_with_their_own_timestep():
    clean = torch.randn(1, 16, 2, *LATENT_SHAPE[3:], generator=torch.Generator().manual_seed(5))
    model, noise, _, _, latents = run_recorded(conditional=clean)
    schedule = make_schedule(ScheduleConfig(), 3)
    for call, timestep in zip(model.calls, schedule.timesteps):
        torch.testing.assert_close(call["x"][:, :, :2], clean.repeat(2, 1, 1, 1, 1), rtol=0, atol=0)
        assert call["condition_mask"][:, :, :2].eq(1).all() and call["condition_mask"][:, :, 2:].eq(0).all()
        assert call["timesteps"][:, :2].eq(np.float32(0.1)).all()  # official 0.1, i.e. flow time 1e-4
        assert call["timesteps"][:, 2:].eq(timestep).all()
    # The held frames follow the straight path noise -> clean and end close to the clean latents.
    assert rel_err(latents[:, :, :2], clean) < 0.05


def test_pre_trained_variant_gives_conditional_frames_the_noisy_timestep():
    clean = torch.zeros(1, 16, 1, *LATENT_SHAPE[3:])
    model, *_ = run_recorded(conditional=clean, variant="pre-trained")
    assert len(model.calls) == 3  # shift schedule: one evaluation per step
    for call in model.calls:
        assert call["timesteps"].eq(call["timesteps"][:, -1:]).all()


@pytest.mark.parametrize("variant", ["post-trained", "pre-trained"])
def test_progress_counts_the_steps_asked_for(variant):
    seen = []
    model = run_recorded(variant=variant, num_steps=3, progress=lambda step, total: seen.append((step, total)))[0]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert len(model.calls) == (4 if variant == "post-trained" else 3)  # karras: one more model evaluation


def test_non_finite_latents_raise():
    def exploding(x, timesteps, crossattn_emb, *, condition_mask):
        return torch.full_like(x, float("nan"))

    noise = torch.zeros(LATENT_SHAPE)
    context = torch.zeros(1, 16, TEXT_WIDTH)
    with pytest.raises(SamplingError, match="non-finite latents after model evaluation 1/4"):
        sample(exploding, noise, context, context, config=SamplerConfig(), num_steps=3, guidance=7)


def test_guidance_needs_a_negative_embedding():
    with pytest.raises(ValueError, match="guidance 7 needs a negative prompt embedding"):
        sample(
            RecordingModel(),
            torch.zeros(LATENT_SHAPE),
            torch.zeros(1, 16, TEXT_WIDTH),
            None,
            config=SamplerConfig(),
            num_steps=1,
            guidance=7,
        )


def test_initial_noise_is_numpy_randomstate_float32():
    noise = initial_noise(42, (1, 16, 3, 4, 6))
    expected = np.random.RandomState(42).standard_normal((1, 16, 3, 4, 6)).astype(np.float32)
    assert noise.dtype == torch.float32
    np.testing.assert_array_equal(noise.numpy(), expected)
    assert not torch.equal(initial_noise(43, (1, 16, 3, 4, 6)), noise)


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown model variant 'mid-trained'"):
        SamplerConfig.preset("mid-trained")
