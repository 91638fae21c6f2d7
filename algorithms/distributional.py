"""The DSAC-T distributional critic (Duan et al., "DSAC-T", arXiv 2310.05858), as used by the released DACER code.

Each member models the return as a Gaussian with mean mu(s, a) and std sigma(s, a) = softplus(head). The update
(DACER code ``relax/algorithm/dacer.py``; docs/algorithms.md, DACER, "Critic"):

- Target: the target member with the lower mean at (s', a') gives y = r + gamma (1 - d) mu_bar and a sampled
  return y_s = r + gamma (1 - d) (mu_bar + sigma_bar clip(z, -3, 3)), z ~ N(0, 1).
- omega: a running mean of each member's batch-mean sigma (rate tau_b, started at the first batch mean). It
  scales the whole loss ("std-adaptive") and bounds the sampled target, y_b = mu + clip(y_s - mu, -3 omega, 3 omega).
- Loss per member: -(omega^2 + eps) E[ mu sg(y - mu) / (sg(sigma)^2 + eps)
                                      + sigma ((sg(mu) - y_b)^2 - sg(sigma)^2) / (sg(sigma)^3 + eps) ],
  whose mu-gradient is an MSE step towards y rescaled by omega^2 / sigma^2, and whose sigma-gradient grows sigma
  while the clipped squared error exceeds sigma^2.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.nets import CriticEnsemble


class ReturnDistribution(NamedTuple):
    mean: torch.Tensor  # [n, B]
    std: torch.Tensor   # [n, B]


class DistributionalCritic(nn.Module):
    """``n`` Gaussian return models evaluated together (one ``CriticEnsemble`` with two outputs per member)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], n: int = 2, act: str = "mish") -> None:
        super().__init__()
        self.n = n
        self.net = CriticEnsemble(obs_dim, act_dim, hidden, n, act, outputs=2)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> ReturnDistribution:
        out = self.net(obs, actions)
        return ReturnDistribution(out[..., 0], F.softplus(out[..., 1]))


class DistributionalTarget(NamedTuple):
    mean: torch.Tensor    # [B] y
    sample: torch.Tensor  # [B] y_s


@torch.no_grad()
def distributional_target(target_critic: DistributionalCritic, next_obs: torch.Tensor, next_actions: torch.Tensor,
                          rewards: torch.Tensor, discount: torch.Tensor, generator: torch.Generator,
                          z_clip: float = 3.0) -> DistributionalTarget:
    """y and y_s from the target member with the lower mean; ``discount`` = gamma (1 - terminated), ``rewards``
    already scaled."""
    dist = target_critic(next_obs, next_actions)
    lower = dist.mean.argmin(0, keepdim=True)
    mean = dist.mean.gather(0, lower).squeeze(0)
    std = dist.std.gather(0, lower).squeeze(0)
    z = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype).clamp_(-z_clip, z_clip)
    return DistributionalTarget(rewards + discount * mean, rewards + discount * (mean + std * z))


def running_std(omega: torch.Tensor, std: torch.Tensor, rate: float) -> torch.Tensor:
    """New omega [n] from this batch's std [n, B]; a negative omega means "not started" and takes the batch mean
    (a tensor test, so no host sync)."""
    batch_mean = std.detach().mean(-1)
    return torch.where(omega < 0, batch_mean, torch.lerp(omega, batch_mean, rate))


def distributional_loss(dist: ReturnDistribution, target: DistributionalTarget, omega: torch.Tensor,
                        epsilon: float = 0.1, bound: float = 3.0) -> torch.Tensor:
    """Sum over members of the DSAC-T loss (module docstring); ``omega`` [n] is this step's running std."""
    mean, std = dist
    std_sg, mean_sg = std.detach().clamp_min(0.0), mean.detach()
    omega = omega.detach().unsqueeze(-1)
    bounded = (mean_sg + (target.sample - mean_sg).clamp(-bound * omega, bound * omega))
    mean_term = mean * (target.mean - mean_sg) / (std_sg.pow(2) + epsilon)
    std_term = std * ((mean_sg - bounded).pow(2) - std_sg.pow(2)) / (std_sg.pow(3) + epsilon)
    return -((omega.squeeze(-1).pow(2) + epsilon) * (mean_term + std_term).mean(-1)).sum()
