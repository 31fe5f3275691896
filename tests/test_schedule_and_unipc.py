"""The sigma schedules and the UniPC solver: parity with diffusers' UniPCMultistepScheduler as Cosmos-Predict2.5
uses it (karras sigmas and timesteps, every intermediate sample of full runs), and the solver's own properties."""

import numpy as np
import pytest
import torch
from diffusers import UniPCMultistepScheduler

from cosmos_ray.sampling.schedule import ScheduleConfig, make_schedule
from cosmos_ray.sampling.unipc import UniPCSolver
from tests.oracles import diffusers_scheduler
from tests.sampling_helpers import rel_err

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers + numpy 2


def scheduler_for(num_evaluations: int) -> UniPCMultistepScheduler:
    """diffusers' Cosmos-Predict2.5 scheduler set up for a run, with its sigmas in float64."""
    scheduler = diffusers_scheduler()
    scheduler.set_timesteps(num_evaluations)
    scheduler.sigmas = scheduler.sigmas.double()
    return scheduler


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
    """Same random velocities through both solvers, float64 samples: every intermediate sample agrees to the
    precision of our coefficients, which are float32 as the official scheduler's (diffusers': float64)."""
    theirs = scheduler_for(num_steps + 1)
    ours = UniPCSolver(theirs.sigmas.tolist())
    gen = torch.Generator().manual_seed(num_steps)
    x_ours = x_theirs = torch.randn(2, 4, 3, 5, 6, generator=gen, dtype=torch.float64)
    for t in theirs.timesteps:
        velocity = torch.randn(x_ours.shape, generator=gen, dtype=torch.float64)
        x_theirs = theirs.step(velocity, t, x_theirs, return_dict=False)[0]
        x_ours = ours.step(velocity, x_ours)
        assert rel_err(x_ours, x_theirs) < 1e-6


def test_unipc_last_step_returns_x0_prediction():
    solver = UniPCSolver([0.9, 0.5, 0.0])
    x = torch.ones(3, dtype=torch.float64)
    x = solver.step(torch.zeros(3, dtype=torch.float64), x)
    v = torch.full((3,), 2.0, dtype=torch.float64)
    out = solver.step(v, x)
    torch.testing.assert_close(out, x - 0.5 * v, rtol=0, atol=0)


def test_unipc_is_exact_on_a_straight_flow():
    """Constant velocity (a straight rectified-flow path) is integrated exactly from noise to data (up to the
    float32 coefficients)."""
    data, noise = torch.randn(2, 7, dtype=torch.float64).unbind(0)
    sigmas = make_schedule(ScheduleConfig(), 8).sigmas
    solver = UniPCSolver(sigmas)
    x = (1 - sigmas[0]) * data + sigmas[0] * noise
    for _ in range(len(sigmas) - 1):
        x = solver.step(noise - data, x)
    torch.testing.assert_close(x, data, rtol=1e-6, atol=1e-6)


def test_unipc_refuses_extra_steps():
    solver = UniPCSolver([0.5, 0.0])
    x = solver.step(torch.zeros(1), torch.zeros(1))
    with pytest.raises(RuntimeError, match="already took all 1 steps"):
        solver.step(torch.zeros(1), x)
