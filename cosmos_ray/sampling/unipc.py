"""UniPC multistep solver (B2 variant, data prediction) for rectified-flow velocity models.

The configuration the official Cosmos-Predict2.5 sampler uses: solver order 2 with one order-1 warm-up
step, the UniC corrector after every model evaluation but the first, and order 1 on the final step (where
the next sigma is 0, so the step returns the x0 prediction).

Per step i, with the model's velocity v at the current sample x and sigma s_i:

    x0_i = x - s_i * v                                    data prediction
    x    = UniC(x_prev, x0_{i-2}, x0_{i-1}, x0_i)         corrector (i > 0)
    x    = UniP(x, x0_{i-1}, x0_i) at s_{i+1}             predictor

in log-SNR time lambda(s) = log((1 - s) / s). Coefficients are computed in float64 from the schedule's
sigmas and applied to the latents in their own dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

SOLVER_ORDER = 2


def log_snr(sigma: float) -> float:
    """lambda = log(alpha) - log(sigma) for flow time sigma (alpha = 1 - sigma); +inf at sigma = 0."""
    if sigma == 0.0:
        return math.inf
    return math.log(1.0 - sigma) - math.log(sigma)


class UniPCSolver:
    """Steps latents along `sigmas` (one value per model evaluation, then the final sigma, usually 0).

    Call `step(velocity, sample)` once per model evaluation, in order; it returns the next sample.
    """

    def __init__(self, sigmas: Sequence[float]):
        if len(sigmas) < 2:
            raise ValueError(f"need at least two sigmas (one evaluation and the final one), got {len(sigmas)}")
        self.sigmas = [float(s) for s in sigmas]
        self.num_steps = len(self.sigmas) - 1
        self.step_index = 0
        self.x0_history: list[Tensor] = []  # data predictions of the last SOLVER_ORDER steps, oldest first
        self.last_sample: Tensor | None = None  # the sample the previous predictor started from
        self.last_order = 0

    def step(self, velocity: Tensor, sample: Tensor) -> Tensor:
        i = self.step_index
        if i >= self.num_steps:
            raise RuntimeError(f"solver already took all {self.num_steps} steps")
        x0 = sample - self.sigmas[i] * velocity
        if i > 0:
            sample = self._correct(x0)
        self.x0_history = (self.x0_history + [x0])[-SOLVER_ORDER:]
        # Warm up from order 1, and drop to order 1 on the last step.
        order = min(SOLVER_ORDER, i + 1, self.num_steps - i)
        self.last_sample = sample
        self.last_order = order
        self.step_index += 1
        return self._predict(sample, order)

    def _predict(self, sample: Tensor, order: int) -> Tensor:
        """UniP-`order` from sigmas[i] to sigmas[i + 1]; i is the step just taken."""
        i = self.step_index - 1
        s0, t = self.sigmas[i], self.sigmas[i + 1]
        x0 = self.x0_history[-1]
        h, h_phi_1 = _step_size(s0, t)
        out = (t / s0) * sample - (1.0 - t) * h_phi_1 * x0
        if order == 2:
            r = (log_snr(self.sigmas[i - 1]) - log_snr(s0)) / h
            d1 = (self.x0_history[-2] - x0) / r
            out = out - (1.0 - t) * h_phi_1 * 0.5 * d1
        return out

    def _correct(self, x0_now: Tensor) -> Tensor:
        """UniC with the order of the previous predictor: refines the sample at sigmas[i] using x0_now."""
        i = self.step_index
        s0, t = self.sigmas[i - 1], self.sigmas[i]
        x0_prev = self.x0_history[-1]
        assert self.last_sample is not None  # set by the step before
        h, h_phi_1 = _step_size(s0, t)
        out = (t / s0) * self.last_sample - (1.0 - t) * h_phi_1 * x0_prev
        d1_now = x0_now - x0_prev
        if self.last_order == 1:
            return out - (1.0 - t) * h_phi_1 * 0.5 * d1_now
        r = (log_snr(self.sigmas[i - 2]) - log_snr(s0)) / h
        d1 = (self.x0_history[-2] - x0_prev) / r
        rho_1, rho_now = _corrector_weights(h, h_phi_1, r)
        return out - (1.0 - t) * h_phi_1 * (rho_1 * d1 + rho_now * d1_now)


def _step_size(s0: float, t: float) -> tuple[float, float]:
    """h = lambda(t) - lambda(s0) and h * phi_1 = expm1(-h) (the B(h) of the B2 variant)."""
    h = log_snr(t) - log_snr(s0)
    return h, math.expm1(-h)


def _corrector_weights(h: float, h_phi_1: float, r: float) -> tuple[float, float]:
    """Solves the order-2 UniC system [[1, 1], [r, 1]] @ rho = b for the two difference weights."""
    hh = -h
    h_phi_k = h_phi_1 / hh - 1.0
    b1 = h_phi_k / h_phi_1
    b2 = 2.0 * (h_phi_k / hh - 0.5) / h_phi_1
    rho_1 = (b1 - b2) / (1.0 - r)
    return rho_1, b1 - rho_1
