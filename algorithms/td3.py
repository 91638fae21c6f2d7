"""TD3, Twin Delayed DDPG (Fujimoto, van Hoof, Meger, ICML 2018, arXiv 1802.09477).

Policy: a deterministic actor mu(s) = tanh(MLP(s)) in [-1, 1]^d. Exploring: a = clip(mu(s) + sigma_e xi, -1, 1),
xi ~ N(0, I) from the agent's own generator; evaluating (``deterministic=True``): a = mu(s), no noise.
Critic (every update): target policy smoothing and clipped double Q,
    a' = clip(mu_target(s') + clip(sigma_t xi, -c, c), -1, 1),    y = r_scaled + gamma (1 - terminated) min_j Qbar_j(s', a'),
each Q_j regressed on y (sum over members of the mean squared error).
Delayed (every ``policy_delay`` updates): the actor maximises Q_1(s, mu(s)) (the first critic only, as in the
paper), then the target actor and the target critics move towards the online ones by Polyak averaging with tau.

Defaults are the TD3 authors' updated code (github sfujim/TD3 ``main.py``/``TD3.py``), which is also what the SDAC
development repo's TD3 script ran (github mahaitongdae/DACER-Diffusion-with-Online-RL, branch dev_tianyi, commit
c67b40a, ``relax/algorithm/TD3.py`` and ``scripts/train_td3.py``): 2 x 256 ReLU actor and critics, Adam 3e-4, batch
256, gamma 0.99, tau 0.005, exploration noise 0.1, target noise 0.2 clipped at 0.5, delay 2. The 2018 paper's own
settings (400-300 networks, Adam 1e-3, batch 100) are a config away (docs/algorithms.md, TD3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from algorithms import config as cfg
from algorithms.base import Agent, AgentConfig, Batch, register
from algorithms.fields import shared
from algorithms.nets import (CriticEnsemble, adam, critic_regression_step, frozen_copy, mlp, no_param_grads,
                             optimizer_step, polyak_update)

ACTOR_Q = ("first", "min", "mean")


@dataclass
class TD3Config(AgentConfig):
    # Defaults: sfujim/TD3 main.py + TD3.py (updated code) = SDAC-dev relax/algorithm/TD3.py:14-94, train_td3.py:41-50.
    actor_lr: float = shared("actor_lr", 3e-4)            # TD3.py:83
    critic_lr: float = shared("critic_lr", 3e-4)          # TD3.py:87
    tau: float = shared("tau", 0.005, "Polyak rate of the target actor and target critics")  # train_td3.py:47
    hidden: tuple[int, ...] = shared("hidden", (256, 256),
                                     "hidden layer widths of the actor and of each critic; `-o hidden=400,300` "
                                     "for the 2018 paper's networks")  # TD3.py:18-19, 36-43
    activation: str = shared("activation", "relu")        # TD3.py:26-27, 49-55
    n_critics: int = shared("n_critics", 2, "number of Q networks; the critic target uses their minimum")
    exploration_noise: float = cfg.field(0.1, "std of the Gaussian added to the actor's action when exploring "
                                              "(action units: [-1, 1]); the sum is clipped to [-1, 1]",
                                         cfg.non_negative)  # train_td3.py:44
    target_noise: float = cfg.field(0.2, "std of the target policy smoothing noise added to the target actor's "
                                         "action in the critic target", cfg.non_negative)  # train_td3.py:48
    target_noise_clip: float = cfg.field(0.5, "the smoothing noise is clipped to [-target_noise_clip, "
                                              "target_noise_clip] before it is added", cfg.non_negative)  # :49
    policy_delay: int = shared("policy_delay", 2, "the actor and all target networks are updated every this many "
                                                  "updates; the critics every update")  # train_td3.py:50
    actor_q: str = cfg.field("first", "critic value the actor maximises: first (Q_1, the TD3 paper and code), min "
                                      "or mean of the ensemble", cfg.one_of(ACTOR_Q))
    reward_scale: float = shared("reward_scale", 1.0)      # no scaling in TD3


@register
class TD3(Agent):
    name = "td3"
    Config = TD3Config
    description = "TD3: deterministic actor, clipped double Q, target smoothing, delayed updates (Fujimoto 2018)"
    metric_names = ("loss/critic", "loss/actor", "q_mean")
    state_attributes = ("actor", "critic", "actor_target", "critic_target", "actor_optimizer", "critic_optimizer",
                        "num_updates", "last_actor_loss")

    def __init__(self, obs_dim: int, act_dim: int, config: TD3Config | None = None,
                 device: str | torch.device = "cpu", seed: int = 0) -> None:
        super().__init__(obs_dim, act_dim, config, device, seed)
        c = self.config
        with self.seeded_init():
            self.actor = nn.Sequential(mlp(obs_dim, c.hidden, act_dim, c.activation), nn.Tanh()).to(self.device)
            self.critic = CriticEnsemble(obs_dim, act_dim, c.hidden, c.n_critics, c.activation).to(self.device)
        self.actor_target, self.critic_target = frozen_copy(self.actor), frozen_copy(self.critic)
        self.actor_optimizer = adam(self.actor.parameters(), c.actor_lr, self.device)
        self.critic_optimizer = adam(self.critic.parameters(), c.critic_lr, self.device)
        self.num_updates = 0
        # The actor loss of the latest delayed step, reported by the updates in between (and saved: exact resume).
        self.last_actor_loss = torch.zeros((), device=self.device)

    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False) -> np.ndarray:
        action = self.actor(self.as_obs_tensor(obs))
        if not deterministic:
            noise = torch.randn(action.shape, generator=self.generator, device=self.device, dtype=action.dtype)
            action = (action + self.config.exploration_noise * noise).clamp(-1.0, 1.0)
        return action.cpu().numpy()

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        target = self.critic_target_values(batch)
        critic_loss, q_mean = critic_regression_step(self.critic, self.critic_optimizer, batch.obs, batch.actions,
                                                     target)
        self.num_updates += 1
        if self.num_updates % c.policy_delay == 0:  # updates policy_delay, 2 policy_delay, ... (sfujim's counter)
            self.last_actor_loss = self._update_actor(batch.obs)
            polyak_update(self.critic_target, self.critic, c.tau)
            polyak_update(self.actor_target, self.actor, c.tau)
        return {"loss/critic": critic_loss, "loss/actor": self.last_actor_loss, "q_mean": q_mean}

    @torch.no_grad()
    def smoothed_target_actions(self, next_obs: torch.Tensor) -> torch.Tensor:
        """a' = clip(mu_target(s') + clip(target_noise xi, -target_noise_clip, target_noise_clip), -1, 1)."""
        c = self.config
        action = self.actor_target(next_obs)
        noise = torch.randn(action.shape, generator=self.generator, device=self.device, dtype=action.dtype)
        noise = (c.target_noise * noise).clamp(-c.target_noise_clip, c.target_noise_clip)
        return (action + noise).clamp(-1.0, 1.0)

    @torch.no_grad()
    def critic_target_values(self, batch: Batch) -> torch.Tensor:
        """y = reward_scale r + gamma (1 - terminated) min_j Qbar_j(s', a') with the smoothed target action a'."""
        c = self.config
        next_q = self.critic_target(batch.next_obs, self.smoothed_target_actions(batch.next_obs)).min(0).values
        return c.reward_scale * batch.rewards + c.gamma * (1.0 - batch.terminated) * next_q

    def _update_actor(self, obs: torch.Tensor) -> torch.Tensor:
        with no_param_grads(self.critic):  # the gradient reaches the actor through the actions only
            q = self.critic(obs, self.actor(obs))
        if self.config.actor_q == "first":
            q = q[0]
        else:
            q = q.min(0).values if self.config.actor_q == "min" else q.mean(0)
        actor_loss = -q.mean()
        optimizer_step(self.actor_optimizer, actor_loss)
        return actor_loss.detach()
