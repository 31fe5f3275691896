"""Schedule and UniPC solver: parity with diffusers' UniPCMultistepScheduler as Cosmos-Predict2.5 uses it; the
sampler registry, and a test-only sampler registered and run by a generator."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel, UniPCMultistepScheduler

from cosmos_ray.core.progress import Step
from cosmos_ray.core.registry import MODELS, get_model
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.generator import Generator
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
from cosmos_ray.models.vae import VAEConfig, WanVAE
from cosmos_ray.sampling import SAMPLERS, FewStepSampler, Sampler, get_sampler, register_sampler
from cosmos_ray.sampling.base import SamplingError
from cosmos_ray.sampling.guided import SamplerConfig, initial_noise, sample
from cosmos_ray.sampling.schedule import ScheduleConfig, make_schedule
from cosmos_ray.sampling.unipc import UniPCSolver
from tests.oracles import diffusers_pipeline, diffusers_scheduler

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers + numpy 2


def scheduler_for(num_evaluations: int) -> UniPCMultistepScheduler:
    """diffusers' Cosmos-Predict2.5 scheduler set up for a run, with its sigmas in float64."""
    scheduler = diffusers_scheduler()
    scheduler.set_timesteps(num_evaluations)
    scheduler.sigmas = scheduler.sigmas.double()
    return scheduler


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("num_steps", [35, 4, 1])
def test_karras_schedule_matches_diffusers(num_steps):
    ours = make_schedule(ScheduleConfig(kind="karras", quantize_timesteps=False), num_steps)
    theirs = scheduler_for(num_steps + 1)
    assert ours.num_evaluations == num_steps + 1  # 35 official steps = 36 model evaluations
    np.testing.assert_allclose(ours.sigmas, theirs.sigmas.numpy(), rtol=1e-6, atol=0)
    assert ours.sigmas[-1] == 0.0
    quantized = make_schedule(ScheduleConfig(kind="karras"), num_steps)
    np.testing.assert_array_equal(quantized.timesteps, theirs.timesteps.numpy())
    np.testing.assert_allclose(ours.timesteps, theirs.sigmas[:-1].numpy() * 1000, rtol=1e-12)


def test_karras_schedule_endpoints_and_official_timesteps():
    schedule = make_schedule(ScheduleConfig(kind="karras"), 35)
    assert schedule.sigmas[0] == pytest.approx(200 / 201, rel=1e-7)
    assert schedule.sigmas[-2] == pytest.approx(0.01 / 1.01, rel=1e-6)
    # The DiT gets int(1000 * sigma): 995 at the start, 9 at the end.
    assert schedule.timesteps[0] == 995 and schedule.timesteps[-1] == 9
    assert all(a > b for a, b in zip(schedule.sigmas, schedule.sigmas[1:]))


def test_shift_schedule():
    schedule = make_schedule(ScheduleConfig(kind="shift", shift=5.0), 35)
    assert schedule.num_evaluations == 35
    s = np.float32(0.999).item()
    assert schedule.sigmas[0] == pytest.approx(5 * s / (1 + 4 * s), rel=1e-7)
    # Evenly spaced before the shift: unshift the second value.
    second = schedule.sigmas[1]
    assert second / (5 - 4 * second) == pytest.approx(s * 34 / 35, rel=1e-6)
    assert schedule.sigmas[-1] == 0.0


def test_unknown_schedule_kind():
    with pytest.raises(ValueError, match="unknown schedule kind 'linear'"):
        make_schedule(ScheduleConfig(kind="linear"), 4)  # type: ignore[arg-type]  # an unknown kind on purpose


@pytest.mark.parametrize("num_steps", [35, 5, 2, 1])
def test_unipc_matches_diffusers_over_a_full_run(num_steps):
    """Same random velocities through both solvers, float64: every intermediate sample agrees."""
    theirs = scheduler_for(num_steps + 1)
    ours = UniPCSolver(theirs.sigmas.tolist())
    gen = torch.Generator().manual_seed(num_steps)
    x_ours = x_theirs = torch.randn(2, 4, 3, 5, 6, generator=gen, dtype=torch.float64)
    for t in theirs.timesteps:
        velocity = torch.randn(x_ours.shape, generator=gen, dtype=torch.float64)
        x_theirs = theirs.step(velocity, t, x_theirs, return_dict=False)[0]
        x_ours = ours.step(velocity, x_ours)
        assert rel_err(x_ours, x_theirs) < 1e-6
    assert rel_err(x_ours, x_theirs) < 1e-12


def test_unipc_last_step_returns_x0_prediction():
    solver = UniPCSolver([0.9, 0.5, 0.0])
    x = torch.ones(3, dtype=torch.float64)
    x = solver.step(torch.zeros(3, dtype=torch.float64), x)
    v = torch.full((3,), 2.0, dtype=torch.float64)
    out = solver.step(v, x)
    torch.testing.assert_close(out, x - 0.5 * v, rtol=0, atol=0)


def test_unipc_is_exact_on_a_straight_flow():
    """Constant velocity (a straight rectified-flow path) is integrated exactly from noise to data."""
    data, noise = torch.randn(2, 7, dtype=torch.float64).unbind(0)
    sigmas = make_schedule(ScheduleConfig(), 8).sigmas
    solver = UniPCSolver(sigmas)
    x = (1 - sigmas[0]) * data + sigmas[0] * noise
    for _ in range(len(sigmas) - 1):
        x = solver.step(noise - data, x)
    torch.testing.assert_close(x, data, rtol=1e-12, atol=1e-12)


def test_unipc_refuses_extra_steps():
    solver = UniPCSolver([0.5, 0.0])
    x = solver.step(torch.zeros(1), torch.zeros(1))
    with pytest.raises(RuntimeError, match="already took all 1 steps"):
        solver.step(torch.zeros(1), x)


# --- the sampling loop ------------------------------------------------------------------------------------

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
        conditional_latents=conditional,
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
        conditional_latents=conditional,
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


def test_unknown_recipe_lists_the_registered_ones():
    with pytest.raises(
        ValueError, match="unknown sampler recipe 'mid-trained'; registered: few-step, post-trained, pre-trained"
    ):
        get_sampler("mid-trained")
    with pytest.raises(ValueError, match="a sampler is already registered as 'few-step'"):
        register_sampler("few-step")(FewStepSampler)


# --- adding a sampler: a class and a registration --------------------------------------------------------


class EulerSampler(Sampler):
    """Test-only: plain Euler steps on the velocity from flow time 1 to 0, unguided, text2world only; records
    its calls. In a module of cosmos_ray/sampling/ it would carry `@register_sampler("euler")`."""

    uses_guidance = False
    holds_conditional_frames = False

    def __init__(self):
        self.calls: list[dict] = []

    def initial_noise(self, seed, shape, device):
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)

    def num_evaluations(self, num_steps):
        return num_steps

    def sample(
        self,
        model,
        noise,
        prompt_embedding,
        negative_embedding,
        *,
        num_steps,
        guidance,
        conditional_latents=None,
        timestep_scale,
        model_dtype=torch.float32,
        progress=None,
    ):
        self.calls.append(dict(shape=tuple(noise.shape), negative=negative_embedding, num_steps=num_steps))
        batch, _, frames, height, width = noise.shape
        mask = noise.new_zeros(batch, 1, frames, height, width, dtype=model_dtype)
        times = torch.linspace(1.0, 0.0, num_steps + 1).tolist()  # flow time: x_t = (1 - t) x0 + t noise
        x = noise.float()
        for step, (t, t_next) in enumerate(zip(times, times[1:])):
            timesteps = torch.full((batch, frames), t / timestep_scale)  # the net multiplies them by its scale
            velocity = model(x.to(model_dtype), timesteps, prompt_embedding.to(model_dtype), condition_mask=mask)
            x = x + (t_next - t) * velocity.float()  # dx/dt = noise - x0
            if progress is not None:
                progress(step + 1, num_steps)
        return x


@pytest.fixture
def euler_model(monkeypatch):
    """The Euler sampler registered as recipe "test-euler", and a test model ("test/euler": the 2B post-trained
    net with that recipe); both removed after the test."""
    register_sampler("test-euler")(EulerSampler)
    model = dataclasses.replace(get_model("2B/post-trained"), name="test/euler", sampler_recipe="test-euler")
    monkeypatch.setitem(MODELS, model.name, model)
    yield model.name
    del SAMPLERS["test-euler"]


def euler_spec(kind: str = "text2world") -> GenerationSpec:
    inputs = {"text2world": None, "image2world": str(ROOT / "examples" / "media" / "square.png")}
    return GenerationSpec(
        inference_type=kind, name="euler", prompt="p", input_path=inputs[kind], cosmos_ray_num_frames=9, num_steps=3
    )


def test_a_registered_sampler_is_what_a_model_with_its_recipe_generates_with(euler_model):
    generator = Generator.from_pretrained("tiny", model=euler_model, device="cpu")
    assert isinstance(generator.sampler, EulerSampler)
    steps: list[Step] = []
    result = generator(euler_spec(), progress=steps.append)
    assert result is not None and result.frames.shape == (9, 64, 96, 3)
    assert steps == [Step(1, 3), Step(2, 3), Step(3, 3)]
    # one call, on the tiny latents of 9 frames at 64x96; no negative prompt for a sampler without guidance
    assert generator.sampler.calls == [dict(shape=(1, 16, 3, 8, 12), negative=None, num_steps=3)]
    meta = result.metadata
    assert (meta["model"], meta["num_steps"], meta["evaluations"], meta["guidance"]) == ("test/euler", 3, 3, 0)
    with pytest.raises(SpecError, match=r"'inference_type' the sampler \(EulerSampler\) holds no conditional frames"):
        generator(euler_spec("image2world"))


def test_a_sampler_can_replace_the_models_recipe():
    euler = EulerSampler()
    generator = Generator.from_pretrained("tiny", device="cpu", sampler=euler)
    result = generator(euler_spec())
    assert result is not None and (result.metadata["model"], result.metadata["evaluations"]) == ("2B/post-trained", 3)
    assert generator.sampler is euler and len(euler.calls) == 1
