"""The distilled model's few-step sampler against hand-derived values of the official lines.

diffusers 0.42.1 has no distilled Cosmos-Predict2.5 pipeline. The official loop itself
(`_src/predict2/distill/models/video2world_model_distill_dmd2.py` at 1.5.0, 7e5ffc83) runs in the golden tool:
tests/test_official_distilled.py. These tests check the formulas: the official loop written out in its own
TrigFlow form (`generate_samples_from_batch`, `denoise_edm`, `RectifiedFlow_sCMWrapper`), the four distilled
times, and closed forms a correct sampler must reproduce (docs/reference-notes.md cites them).
"""

from __future__ import annotations

import math

import pytest
import torch

from cosmos_ray.sampling.few_step import DISTILLED_TIMES, FewStepConfig, flow_time, initial_noise, sample_few_step

SHAPE = (1, 4, 3, 4, 6)


class Recorder:
    """A velocity model that records its inputs and returns `velocity(x, flow time)`."""

    def __init__(self, velocity):
        self.velocity = velocity
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x, timesteps, crossattn_emb, *, condition_mask):
        assert condition_mask.abs().sum() == 0  # text2world: no frame is held
        self.calls.append((x.clone(), timesteps.clone()))
        return self.velocity(x, timesteps[:, :1].reshape(-1, 1, 1, 1, 1))


def run(velocity, *, num_steps=4, timestep_scale=1.0, model_dtype=torch.float64, seed=0):
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))
    model = Recorder(velocity)
    out = sample_few_step(
        model,
        noise,
        torch.zeros(1, 5, 8),
        config=FewStepConfig(),
        num_steps=num_steps,
        timestep_scale=timestep_scale,
        model_dtype=model_dtype,
    )
    return out, noise, model


def test_the_distilled_times_are_the_shifted_uniform_grid():
    """`selected_sampling_time` = [pi/2, atan 15, atan 5, atan 5/3]: in flow time tan t / (1 + tan t) that is
    1, 15/16, 5/6, 5/8, i.e. the uniform 1, 0.75, 0.5, 0.25 shifted by 5 (5 u / (1 + 4 u))."""
    assert DISTILLED_TIMES == (math.pi / 2, math.atan(15), math.atan(5), math.atan(5 / 3))
    flow = [flow_time(t) for t in DISTILLED_TIMES]
    assert flow == pytest.approx([1.0, 15 / 16, 5 / 6, 5 / 8], abs=1e-15)
    assert flow == pytest.approx([5 * u / (1 + 4 * u) for u in (1.0, 0.75, 0.5, 0.25)], abs=1e-15)


@pytest.mark.parametrize("num_steps, expected", [(1, 1), (2, 2), (4, 4), (35, 4)])
def test_num_steps_takes_the_first_times(num_steps, expected):
    """Official: `selected_sampling_time[:num_steps] + [0]`, so the default 35 steps run all four."""
    config = FewStepConfig()
    assert config.times(num_steps) == DISTILLED_TIMES[:expected]
    assert config.num_evaluations(num_steps) == expected
    with pytest.raises(ValueError, match="num_steps must be at least 1"):
        config.times(0)


def official_loop(velocity, noise: torch.Tensor, times: tuple[float, ...]) -> torch.Tensor:
    """The official loop in its TrigFlow form, float64, sigma_data 1: `x0 = c_skip x + c_out F(c_in x,
    c_noise)` with the coefficients of `RectifiedFlow_sCMWrapper`, then `x = cos(t') x0 + sin(t') eps0`."""
    x = noise.double()
    for t_cur, t_next in zip(times, (*times[1:], 0.0)):
        t = torch.tensor(t_cur, dtype=torch.float64)
        denominator = torch.cos(t) + torch.sin(t)
        c_skip, c_out, c_in, c_noise = (
            1 / denominator,
            -torch.sin(t) / denominator,
            1 / denominator,
            torch.sin(t) / denominator,
        )
        x0 = c_skip * x + c_out * velocity(x * c_in, c_noise)
        x = math.cos(t_next) * x0 + math.sin(t_next) * noise.double() if t_next > 1e-5 else x0
    return x


def toy_velocity(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x) * (1.0 + tau) - 0.3 * torch.sin(3.0 * x) + tau


@pytest.mark.parametrize("num_steps", [1, 2, 4])
def test_matches_the_official_trigflow_loop(num_steps):
    out, noise, _ = run(toy_velocity, num_steps=num_steps)
    expected = official_loop(toy_velocity, noise, DISTILLED_TIMES[:num_steps])
    # ours rounds the state to float32 before each step, as the official loop does; the reference does not
    assert ((out.double() - expected).norm() / expected.norm()).item() < 1e-6


def test_an_exact_velocity_gives_the_data_point_and_reinjects_the_initial_noise():
    """For data that is one point x*, the exact velocity is v = (x - x*) / tau. Then every step's clean
    prediction is x*, the output is x*, and step k's input is (1 - tau_k) x* + tau_k eps0 with the *initial*
    noise eps0 (no fresh noise)."""
    target = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7)).double()
    out, noise, model = run(lambda x, tau: (x - target) / tau)
    assert torch.allclose(out.double(), target, atol=1e-6)
    for (x_in, timesteps), t in zip(model.calls, DISTILLED_TIMES):
        tau = flow_time(t)
        assert torch.allclose(timesteps, torch.full_like(timesteps, tau))
        assert torch.allclose(x_in, (1 - tau) * target + tau * noise.double(), atol=1e-6)


def test_the_net_gets_the_flow_time_in_its_dtype_over_its_timestep_scale():
    """Official: `c_noise.to(bf16)` goes to a net whose timestep_scale is 1.0; a net that multiplies by
    0.001 must get 1000x that to see the same time."""
    _, _, bf16_model = run(lambda x, tau: torch.zeros_like(x), model_dtype=torch.bfloat16)
    _, _, scaled_model = run(lambda x, tau: torch.zeros_like(x), timestep_scale=0.001)
    for t, (_, bf16_steps), (_, scaled_steps) in zip(DISTILLED_TIMES, bf16_model.calls, scaled_model.calls):
        rounded = torch.tensor(flow_time(t), dtype=torch.float64).to(torch.bfloat16).double()
        assert torch.equal(bf16_steps, torch.full_like(bf16_steps, rounded.item()))
        assert torch.allclose(scaled_steps * 0.001, torch.full_like(scaled_steps, flow_time(t)), rtol=1e-12)


def test_the_first_input_is_the_initial_noise():
    """At t = pi/2 the RF input x / (cos t + sin t) is the noise itself (cos pi/2 is 6e-17)."""
    _, noise, model = run(lambda x, tau: torch.zeros_like(x), num_steps=1)
    assert torch.allclose(model.calls[0][0], noise.double(), rtol=1e-15)


def test_initial_noise_is_a_seeded_torch_generator():
    """The official distilled sampler draws `torch.randn` from `torch.Generator(device).manual_seed(seed)`,
    float32 (not the base models' numpy RandomState)."""
    noise = initial_noise(5, SHAPE, "cpu")
    assert noise.dtype == torch.float32 and noise.shape == SHAPE
    assert torch.equal(noise, initial_noise(5, SHAPE, "cpu"))
    assert torch.equal(noise, torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(5)))
    assert not torch.equal(noise, initial_noise(6, SHAPE, "cpu"))


def test_non_finite_latents_end_as_the_official_nan_to_num(caplog):
    """Official: `return torch.nan_to_num(samples)`: NaN -> 0, +-inf -> +-float32 max; the run is not stopped."""

    def velocity(x, tau):
        v = torch.zeros_like(x)
        v[..., 0, 0], v[..., 0, 1], v[..., 0, 2] = float("nan"), float("inf"), float("-inf")
        return v

    out, _, _ = run(velocity, num_steps=1)  # x0 = x - v at t = pi/2
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    big = torch.finfo(torch.float32).max
    assert (out[..., 0, 0] == 0).all() and (out[..., 0, 1] == -big).all() and (out[..., 0, 2] == big).all()
    assert "non-finite latents replaced" in caplog.text
