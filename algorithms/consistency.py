"""Consistency-model building blocks in the Karras/EDM parameterisation (shared by consistency-policy agents).

A consistency function maps a noisy action x at noise level sigma straight to a clean action (Song et al. 2023,
"Consistency Models", arXiv 2303.01469), parameterised as in Karras et al. 2022 (EDM, arXiv 2206.00364) with the
boundary-condition scalings of the consistency-model paper:

    f_theta(x, sigma, s) = clip(c_skip(sigma) x + c_out(sigma) F_theta(c_in(sigma) x, c_noise(sigma), s), -1, 1)
    c_skip = sigma_d^2 / ((sigma - sigma_min)^2 + sigma_d^2)
    c_out  = (sigma - sigma_min) sigma_d / sqrt(sigma^2 + sigma_d^2)
    c_in   = 1 / sqrt(sigma^2 + sigma_d^2)
    c_noise = 250 ln sigma                       (the network's noise-level input; CPQL code: 1000 * 0.25 * log)

so f(x, sigma_min, s) = x exactly (c_skip = 1, c_out = 0): the boundary condition holds by construction.
Noise levels come from the Karras grid sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) -
sigma_max^(1/rho)))^rho, i = 0..N-1, descending from sigma_max to sigma_min.

Sampling: one evaluation at sigma_max from x_T ~ N(0, sigma_max^2 I); multi-step sampling (Song et al. 2023,
Algorithm 1) re-noises the current action to a lower level tau with std sqrt(tau^2 - sigma_min^2) and applies f
again. Defaults (sigma_min 0.002, sigma_max 80, sigma_d 0.5, rho 7, N 40) are those of the consistency-model
paper and of the CPQL code (github cccedric/cpql, agents/karras_diffusion.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from algorithms.diffusion import sinusoidal_embedding
from algorithms.nets import activation, mlp


@dataclass(frozen=True)
class KarrasSchedule:
    """The noise levels of a consistency model and its EDM scalings."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0
    num_scales: int = 40

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.sigma_data <= 0 or self.rho <= 0 or self.num_scales < 2:
            raise ValueError(f"need sigma_data > 0, rho > 0, num_scales >= 2; got {self.sigma_data}, {self.rho}, "
                             f"{self.num_scales}")

    def sigma_at(self, position: torch.Tensor | float) -> torch.Tensor | float:
        """Noise level at a fractional grid position in [0, 1] (0 = sigma_max, 1 = sigma_min)."""
        high, low = self.sigma_max ** (1 / self.rho), self.sigma_min ** (1 / self.rho)
        return (high + position * (low - high)) ** self.rho

    def sigmas(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[num_scales]`` descending Karras grid, sigma_max first, sigma_min last."""
        positions = torch.linspace(0, 1, self.num_scales, dtype=torch.float64)
        return self.sigma_at(positions).to(device=device, dtype=torch.float32)

    def sampling_sigmas(self, steps: int) -> list[float]:
        """Noise levels of a ``steps``-evaluation sampler: sigma_max, then ``steps - 1`` levels evenly spaced in
        sigma^(1/rho) between sigma_max and sigma_min (both excluded). Host floats: fixed by the config."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return [float(self.sigma_at(i / steps)) for i in range(steps)]

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in) with the boundary condition at sigma_min; each has sigma's shape."""
        d2 = self.sigma_data ** 2
        c_skip = d2 / ((sigma - self.sigma_min) ** 2 + d2)
        c_out = (sigma - self.sigma_min) * self.sigma_data / (sigma ** 2 + d2).sqrt()
        c_in = (sigma ** 2 + d2).rsqrt()
        return c_skip, c_out, c_in

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """lambda(sigma) = 1/sigma^2 + 1/sigma_d^2 (the "karras" weighting: SNR + 1/sigma_d^2)."""
        return sigma.pow(-2) + 1.0 / self.sigma_data ** 2


def noise_level_input(sigma: torch.Tensor) -> torch.Tensor:
    """c_noise(sigma) = 250 ln sigma, the noise level as the network sees it (CPQL code; EDM uses ln(sigma)/4)."""
    return 250.0 * sigma.log()


class ConsistencyNet(nn.Module):
    """F_theta(x_in, c_noise, s): MLP on concat(scaled noisy action, noise embedding, obs) -> |A|.

    The noise embedding is a 16-dim sinusoid of c_noise followed by Linear(32) -> act -> Linear(16), as in the
    CPQL code's actor (agents/model.py: SinusoidalPosEmb(16) -> Linear 32 -> Mish -> Linear 16; 3 x 256 Mish).
    The sinusoid is ``diffusion.sinusoidal_embedding`` (frequencies 10000^(-j/8), scaled by 1/4), not CPQL's
    (agents/helpers.py SinusoidalPosEmb: 10000^(-j/7), unscaled). This is a different embedding, not an equivalent
    one: the 1/4 is absorbed by the next linear layer, the frequencies are not. Over sigma log-uniform in
    [0.002, 80] (c_noise in [-1554, 1095]) the best affine map of ours onto CPQL's explains R^2 = 0.48 of its
    variance (0.64 on the 40 training levels of the Karras grid): the j = 0 pair (frequency 1 in both) and the
    slowest pairs match, the j = 1..3 pairs (periods of about 20 to 330 in c_noise against a range of 2650) are
    unrelated (docs/algorithms.md, CPQL, departures). Both give the time MLP a code of the noise level it can learn
    from; the learned function of sigma can differ.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256, 256), act: str = "mish",
                 time_dim: int = 16, time_hidden: int = 32) -> None:
        super().__init__()
        self.act_dim, self.time_dim = act_dim, time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_hidden), activation(act)(),
                                      nn.Linear(time_hidden, time_dim))
        self.net = mlp(act_dim + time_dim + obs_dim, hidden, act_dim, act)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        embedding = self.time_mlp(sinusoidal_embedding(c_noise, self.time_dim))
        return self.net(torch.cat([x_in, embedding, obs], dim=-1))


def consistency_fn(net: ConsistencyNet, schedule: KarrasSchedule, x: torch.Tensor, sigma: torch.Tensor,
                   obs: torch.Tensor) -> torch.Tensor:
    """f_theta(x, sigma, s) for rows ``x`` [R, |A|], ``sigma`` [R], ``obs`` [R, obs_dim]; output in [-1, 1]."""
    c_skip, c_out, c_in = (c.unsqueeze(-1) for c in schedule.scalings(sigma))
    out = c_skip * x + c_out * net(c_in * x, noise_level_input(sigma), obs)
    return out.clamp(-1.0, 1.0)


def one_step(net: ConsistencyNet, schedule: KarrasSchedule, obs: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
    """One action per row of ``obs``: f(x_T, sigma_max, s), x_T ~ N(0, sigma_max^2 I)."""
    x_T = schedule.sigma_max * torch.randn((obs.shape[0], net.act_dim), generator=generator, device=obs.device,
                                           dtype=obs.dtype)
    return consistency_fn(net, schedule, x_T, obs.new_full((obs.shape[0],), schedule.sigma_max), obs)


def refine(net: ConsistencyNet, schedule: KarrasSchedule, action: torch.Tensor, obs: torch.Tensor,
           levels: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """Multi-step sampling after the first evaluation: for each tau in ``levels``, re-noise to tau with std
    sqrt(tau^2 - sigma_min^2) and apply f(., tau). Differentiable unless called under ``torch.no_grad``."""
    for tau in levels:
        noise = torch.randn(action.shape, generator=generator, device=action.device, dtype=action.dtype)
        noisy = action + math.sqrt(tau ** 2 - schedule.sigma_min ** 2) * noise
        action = consistency_fn(net, schedule, noisy, obs.new_full((obs.shape[0],), tau), obs)
    return action


def sample(net: ConsistencyNet, schedule: KarrasSchedule, obs: torch.Tensor, steps: int,
           generator: torch.Generator) -> torch.Tensor:
    """One action per row of ``obs`` from a ``steps``-evaluation sampler (1 = one-step sampling)."""
    return refine(net, schedule, one_step(net, schedule, obs, generator), obs,
                  schedule.sampling_sigmas(steps)[1:], generator)


def adjacent_noise_levels(schedule: KarrasSchedule, rows: int, generator: torch.Generator,
                          device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma_n, sigma_{n+1}) with n ~ U{0..N-2} per row: a noise level and the next lower one on the grid."""
    n = torch.randint(schedule.num_scales - 1, (rows,), generator=generator, device=device)
    step = 1.0 / (schedule.num_scales - 1)
    position = n.to(torch.float32) * step
    return schedule.sigma_at(position), schedule.sigma_at(position + step)
