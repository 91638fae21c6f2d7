"""The temperature alpha of SAC, SDAC/DPMD (rsm.py) and DACER, and the exploration noise it scales.

All three learn log alpha by Adam on loss = log alpha * (H - Hbar), whose gradient H - Hbar lowers alpha while the
policy is more random than the target entropy Hbar = -target_entropy_scale * |A|. They differ only in the entropy
estimate H they pass in: SAC the sample entropy -log pi(a|s), SDAC/DPMD the entropy of the added Gaussian noise,
DACER a GMM fit to sampled actions. In the diffusion agents alpha also sets the exploration noise std
(``noise_scale * alpha``), see :meth:`Temperature.explore`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from algorithms.nets import optimizer_step


class Temperature:
    """log alpha, its Adam optimizer and the target entropy.

    The agents keep ``log_alpha`` and ``optimizer`` in their ``state_attributes`` (as ``log_alpha`` and
    ``alpha_optimizer``): the optimizer holds the tensor, so loading a checkpoint copies into it in place.
    """

    def __init__(self, init_alpha: float, lr: float, target_entropy: float, device: torch.device,
                 noise_scale: float = 0.0) -> None:
        self.log_alpha = torch.tensor(math.log(init_alpha), device=device, requires_grad=True)
        self.target_entropy = target_entropy
        self.optimizer = torch.optim.Adam([self.log_alpha], lr=lr)
        self.noise_scale = noise_scale

    @classmethod
    def from_config(cls, config: Any, act_dim: int, device: torch.device) -> Temperature:
        """From the fields ``init_alpha``, ``alpha_lr``, ``target_entropy_scale`` and, if present, ``noise_scale``."""
        return cls(config.init_alpha, config.alpha_lr, -config.target_entropy_scale * act_dim, device,
                   getattr(config, "noise_scale", 0.0))

    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    def update(self, entropy: torch.Tensor, learn: bool = True) -> torch.Tensor:
        """The detached loss for the entropy estimate(s) ``entropy`` (averaged), after one Adam step if ``learn``."""
        loss = (self.log_alpha * (entropy - self.target_entropy)).mean()
        if learn:
            optimizer_step(self.optimizer, loss)
        return loss.detach()

    def explore(self, action: torch.Tensor, alpha: torch.Tensor | float, generator: torch.Generator) -> torch.Tensor:
        """``clip(action + noise_scale * alpha * xi, -1, 1)``, xi ~ N(0, I): differentiable in ``action``."""
        noise = torch.randn(action.shape, generator=generator, device=action.device, dtype=action.dtype)
        return (action + (self.noise_scale * alpha) * noise).clamp(-1.0, 1.0)
