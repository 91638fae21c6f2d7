"""Soft Actor-Critic with automatic temperature and twin Q (Haarnoja et al. 2018, arXiv 1812.05905).

Policy: a = tanh(u), u ~ N(mu(s), sigma(s)^2), with log pi(a|s) = log N(u) - sum log(1 - tanh(u)^2).
Critic: y = r_scaled + gamma (1 - terminated) [min_j Qbar_j(s', a') - alpha log pi(a'|s')], a' ~ pi(.|s').
Actor: minimise E[alpha log pi(a|s) - min_j Q_j(s, a)]; temperature: minimise E[-log alpha (log pi + Hbar)]
with Hbar = -target_entropy_scale * |A|. Targets are Polyak-averaged with tau.

Defaults are the paper's MuJoCo settings (Table 1 of arXiv 1812.05905: Adam 3e-4, 2 x 256 ReLU, batch 256,
tau 0.005, gamma 0.99, target entropy -|A|). The SDAC/DPMD code's SAC baseline differs (3 x 256 GELU,
log-std max 0.5, log alpha initialised to 1, no tanh correction in the log-prob, rewards x 0.2); every one
of those is a field here, so that baseline is a config, not a fork.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from algorithms import config as cfg
from algorithms.base import Agent, AgentConfig, Batch, register
from algorithms.fields import shared
from algorithms.nets import (CriticEnsemble, adam, critic_regression_step, frozen_copy, mlp, no_param_grads,
                             optimizer_step, polyak_update)
from algorithms.temperature import Temperature


@dataclass
class SACConfig(AgentConfig):
    actor_lr: float = shared("actor_lr", 3e-4)
    critic_lr: float = shared("critic_lr", 3e-4)
    alpha_lr: float = shared("alpha_lr", 3e-4, "Adam learning rate of log alpha (the temperature)")
    tau: float = shared("tau", 0.005)
    hidden: tuple[int, ...] = shared("hidden", (256, 256))
    activation: str = shared("activation", "relu")
    n_critics: int = shared("n_critics", 2)
    init_alpha: float = shared("init_alpha", 1.0, "initial temperature alpha")
    autotune_alpha: bool = cfg.field(True, "learn alpha towards the target entropy; false keeps init_alpha fixed")
    target_entropy_scale: float = shared("target_entropy_scale", 1.0)
    log_std_min: float = cfg.field(-20.0, "lower clamp of the policy's log std")
    log_std_max: float = cfg.field(2.0, "upper clamp of the policy's log std")
    tanh_log_prob_correction: bool = cfg.field(True, "subtract sum log(1 - tanh(u)^2) from the Gaussian log-prob "
                                                     "(the SDAC code's SAC baseline omits it)")
    reward_scale: float = shared("reward_scale", 1.0)
    actor_update_every: int = cfg.field(1, "the actor and alpha are updated every this many updates", cfg.at_least(1))
    target_update_every: int = shared("target_update_every", 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        cfg.check(self.log_std_min < self.log_std_max,
                  f"log_std_min must be below log_std_max, got {self.log_std_min} >= {self.log_std_max}")


class TanhGaussianPolicy(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig) -> None:
        super().__init__()
        self.net = mlp(obs_dim, config.hidden, 2 * act_dim, config.activation)
        self.log_std_min, self.log_std_max = config.log_std_min, config.log_std_max
        self.correct = config.tanh_log_prob_correction

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample and its log-probability ``[B]``."""
        mean, log_std = self(obs)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        pre_tanh = mean + log_std.exp() * noise
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        if self.correct:
            # log(1 - tanh(u)^2) written via softplus so it stays finite for large |u|.
            log_prob = log_prob - (2 * (math.log(2) - pre_tanh - F.softplus(-2 * pre_tanh))).sum(-1)
        return torch.tanh(pre_tanh), log_prob


@register
class SAC(Agent):
    name = "sac"
    Config = SACConfig
    description = "Soft Actor-Critic, twin Q, automatic temperature (Haarnoja et al. 2018)"
    metric_names = ("loss/critic", "loss/actor", "loss/alpha", "alpha", "entropy", "q_mean")
    state_attributes = ("actor", "critic", "critic_target", "log_alpha",
                        "actor_optimizer", "critic_optimizer", "alpha_optimizer", "num_updates")

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig | None = None,
                 device: str | torch.device = "cpu", seed: int = 0) -> None:
        super().__init__(obs_dim, act_dim, config, device, seed)
        c = self.config
        with self.seeded_init():
            self.actor = TanhGaussianPolicy(obs_dim, act_dim, c).to(self.device)
            self.critic = CriticEnsemble(obs_dim, act_dim, c.hidden, c.n_critics, c.activation).to(self.device)
        self.critic_target = frozen_copy(self.critic)
        self.temperature = Temperature.from_config(c, act_dim, self.device)
        self.log_alpha, self.alpha_optimizer = self.temperature.log_alpha, self.temperature.optimizer
        self.actor_optimizer = adam(self.actor.parameters(), c.actor_lr, self.device)
        self.critic_optimizer = adam(self.critic.parameters(), c.critic_lr, self.device)
        self.num_updates = 0
        zero = torch.zeros((), device=self.device)
        self._last_actor_metrics = {"loss/actor": zero, "loss/alpha": zero, "entropy": zero}

    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False) -> np.ndarray:
        obs_tensor = self.as_obs_tensor(obs)
        if deterministic:
            action = torch.tanh(self.actor(obs_tensor)[0])
        else:
            action = self.actor.sample(obs_tensor, self.generator)[0]
        return action.cpu().numpy()

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        alpha = self.temperature.alpha()
        critic_loss, q_mean = self._update_critic(batch, alpha)
        self.num_updates += 1
        if self.num_updates % c.actor_update_every == 0:
            self._last_actor_metrics = self._update_actor_and_alpha(batch.obs, alpha)
        if self.num_updates % c.target_update_every == 0:
            polyak_update(self.critic_target, self.critic, c.tau)
        return {"loss/critic": critic_loss, **self._last_actor_metrics,
                "alpha": alpha, "q_mean": q_mean}

    def _update_critic(self, batch: Batch, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        with torch.no_grad():
            next_actions, next_log_prob = self.actor.sample(batch.next_obs, self.generator)
            next_q = self.critic_target(batch.next_obs, next_actions).min(0).values - alpha * next_log_prob
            target = c.reward_scale * batch.rewards + c.gamma * (1.0 - batch.terminated) * next_q
        return critic_regression_step(self.critic, self.critic_optimizer, batch.obs, batch.actions, target)

    def _update_actor_and_alpha(self, obs: torch.Tensor, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        actions, log_prob = self.actor.sample(obs, self.generator)
        with no_param_grads(self.critic):
            q = self.critic(obs, actions).min(0).values
        actor_loss = (alpha * log_prob - q).mean()
        optimizer_step(self.actor_optimizer, actor_loss)
        alpha_loss = self.temperature.update(-log_prob.detach(), learn=self.config.autotune_alpha)
        return {"loss/actor": actor_loss.detach(), "loss/alpha": alpha_loss,
                "entropy": -log_prob.detach().mean()}
