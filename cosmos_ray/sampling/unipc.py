"""UniPC multistep solver (B2 variant, data prediction) for rectified-flow velocity models.

The configuration the official Cosmos-Predict2.5 sampler uses: solver order 2 with one order-1 warm-up
step, the UniC corrector after every model evaluation but the first, and order 1 on the final step (where
the next sigma is 0, so the step returns the x0 prediction).

Per step i, with the model's velocity v at the current sample x and sigma s_i:

    x0_i = x - s_i * v                                    data prediction
    x    = UniC(x_prev, x0_{i-2}, x0_{i-1}, x0_i)         corrector (i > 0)
    x    = UniP(x, x0_{i-1}, x0_i) at s_{i+1}             predictor

in log-SNR time lambda(s) = log((1 - s) / s).

Rounding as the official scheduler (`FlowUniPCMultistepScheduler`, B(h) = expm1(-h)): its sigmas are float32,
and every coefficient is a float32 scalar tensor computed in the official order of operations (log-SNR,
step size, the order-2 corrector weights from a float32 `linalg.solve`) and applied as the official update
applies it, so the latents are the official ones bit for bit (goldens `sampling`, `unipc`, `end_to_end`).
Scalar tensors stay on the CPU (PyTorch applies them to tensors on any device as scalars).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

SOLVER_ORDER = 2


def log_snr(sigma: Tensor) -> Tensor:
    """lambda = log(alpha) - log(sigma) for flow time sigma (alpha = 1 - sigma), float32; +inf at sigma = 0."""
    return torch.log(1 - sigma) - torch.log(sigma)


class UniPCSolver:
    """Steps latents along `sigmas` (one value per model evaluation, then the final sigma, usually 0).

    Call `step(velocity, sample)` once per model evaluation, in order; it returns the next sample.
    """

    def __init__(self, sigmas: Sequence[float]):
        if len(sigmas) < 2:
            raise ValueError(f"need at least two sigmas (one evaluation and the final one), got {len(sigmas)}")
        self.sigmas = torch.tensor([float(s) for s in sigmas], dtype=torch.float32)  # as the official's
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
        x0 = self.x0_history[-1]
        out, alpha_b_h, h = self._base(sample, x0, self.sigmas[i], self.sigmas[i + 1])
        if order == 2:
            d1 = (self.x0_history[-2] - x0) / ((log_snr(self.sigmas[i - 1]) - log_snr(self.sigmas[i])) / h)
            out = out - alpha_b_h * (0.5 * d1)
        return out

    def _correct(self, x0_now: Tensor) -> Tensor:
        """UniC with the order of the previous predictor: refines the sample at sigmas[i] using x0_now."""
        i = self.step_index
        x0_prev = self.x0_history[-1]
        assert self.last_sample is not None  # set by the step before
        out, alpha_b_h, h = self._base(self.last_sample, x0_prev, self.sigmas[i - 1], self.sigmas[i])
        d1_now = x0_now - x0_prev
        if self.last_order == 1:
            return out - alpha_b_h * (0.5 * d1_now)
        r = (log_snr(self.sigmas[i - 2]) - log_snr(self.sigmas[i - 1])) / h
        d1 = (self.x0_history[-2] - x0_prev) / r
        rho_1, rho_now = _corrector_weights(h, r)
        return out - alpha_b_h * (rho_1 * d1 + rho_now * d1_now)

    @staticmethod
    def _base(sample: Tensor, x0: Tensor, s0: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The order-1 update from s0 to t, (1 - t) B(h) (the factor of every higher-order term), and h."""
        h = log_snr(t) - log_snr(s0)
        b_h = torch.expm1(-h)  # h phi_1(h) = B(h) for the B2 variant
        alpha_t = 1 - t
        return t / s0 * sample - alpha_t * b_h * x0, alpha_t * b_h, h


def _corrector_weights(h: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """Solves the order-2 UniC system [[1, 1], [r, 1]] @ rho = b for the two difference weights, in float32
    with `linalg.solve`, as the official scheduler does."""
    hh = -h
    b_h = torch.expm1(hh)
    h_phi_k = b_h / hh - 1
    b1 = h_phi_k * 1 / b_h
    h_phi_k = h_phi_k / hh - 1 / 2
    b2 = h_phi_k * 2 / b_h
    ratios = torch.tensor([r.item(), 1.0])
    system = torch.stack([torch.pow(ratios, 0), torch.pow(ratios, 1)])
    rho = torch.linalg.solve(system, torch.tensor([b1.item(), b2.item()]))
    return rho[0], rho[1]
