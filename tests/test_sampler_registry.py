"""The sampler registry: unknown and duplicate recipes, and adding a sampler (a class and a registration): a
test-only Euler sampler that a model's recipe picks, or that a caller passes to a generator."""

import dataclasses
from pathlib import Path

import pytest
import torch

from cosmos_ray.core.progress import Step
from cosmos_ray.core.registry import MODELS, get_model
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.generator import Generator
from cosmos_ray.sampling import SAMPLERS, FewStepSampler, Sampler, get_sampler, register_sampler

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers + numpy 2


def test_unknown_recipe_lists_the_registered_ones():
    with pytest.raises(
        ValueError,
        match="unknown sampler recipe 'mid-trained'; registered: few-step, frameinit, multiview, post-trained, "
        "pre-trained",
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
        held=None,
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
