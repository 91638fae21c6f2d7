"""CPQL: Consistency Policy Q-Learning (Chen, Li, Zhao, "Boosting Continuous Control with Consistency Policy",
arXiv 2310.06343, AAMAS 2024; docs/algorithms.md, "CPQL").

Policy: a consistency function f_theta(x, sigma, s) in the Karras/EDM parameterisation (algorithms/consistency.py)
that maps noise x_T ~ N(0, sigma_max^2 I) to an action in one network evaluation (or ``sampling_steps``
evaluations with re-noising in between; the released code's "multistep" sampler is the same idea).

Per update, as in the released code (github cccedric/cpql, agents/ql_cm.py, online settings of main.py):
1. Critic: y = r + gamma (1 - d) min_j Qbar_j(s', a'), a' = one sample of the online policy at s'; twin-Q MSE,
   gradient norm clipped to 2.
2. Policy: L = bc_weight * L_bc + q_weight * (-E min_j Q_j(s, f_theta(x_T, sigma_max, s))) with the just-updated
   critics, gradient norm clipped to 2. Online: bc_weight (alpha in the paper) 0.05, q_weight (eta) 1.
   L_bc, with n ~ U{0..N-2}, z ~ N(0, I), a the replay action and lambda(sigma) = 1/sigma^2 + 1/sigma_d^2:
   - ``bc_loss: consistency`` (default; the paper's consistency-training loss):
       lambda(sigma_n) || f_theta(a + sigma_n z, sigma_n, s) - f_target(a + sigma_{n+1} z, sigma_{n+1}, s) ||^2,
     f_target the EMA copy of the policy. a + sigma_{n+1} z is one Euler step of the probability-flow ODE from
     a + sigma_n z when the score is estimated from the clean action a (consistency training, Song et al. 2023).
   - ``bc_loss: reconstruction`` (what the released code optimises; it computes the consistency loss but
     only logs it):  lambda(sigma_n) || f_theta(a + sigma_n z, sigma_n, s) - a ||^2.
3. EMA (decay 0.995) of the policy and of the critics every 5 updates, starting at update 1000; before that
   the targets stay at their initial weights, as in the released code.

Acting (training and evaluation alike in the released code): 50 candidates per state, min-Q of the target
critics, one candidate drawn from softmax(Q / selection_temperature) (temperature 1 in the code), in [-1, 1].

Deliberate differences from the released code:
- ``deterministic=True`` draws the candidates and the softmax choice from a generator re-seeded at every call
  (``eval_seed``), so evaluation is a pure function of the weights and the observations (the released
  evaluation is as random as data collection); ``eval_selection: greedy`` takes the argmax instead.
- The released code runs gym 0.23, where time-limit truncation is stored as terminal; the harness stores only
  true termination (truncations bootstrap).
- The two evaluations of the policy that carry gradients (the L_bc term at sigma_n and the one-step action at
  sigma_max) run as one batched forward of 2B rows: the same function, one kernel launch per layer.
- PyTorch default initialisation; the noise embedding sinusoid is diffusion.sinusoidal_embedding, a different
  embedding from CPQL's (other frequencies; no affine map turns one into the other: consistency.ConsistencyNet).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from algorithms import config as cfg
from algorithms.base import Agent, AgentConfig, Batch, register
from algorithms.consistency import (ConsistencyNet, KarrasSchedule, adjacent_noise_levels, consistency_fn, refine,
                                    sample)
from algorithms.diffusion import best_of_n
from algorithms.fields import shared
from algorithms.nets import (CriticEnsemble, adam, critic_regression_step, frozen_copy, no_param_grads, optimizer_step,
                             polyak_update)

BC_LOSSES = ("consistency", "reconstruction")
EVAL_SELECTIONS = ("softmax", "greedy")


@dataclass
class CPQLConfig(AgentConfig):
    """Defaults: the released code's online MuJoCo settings (main.py ``online_hyperparameters['mujoco']``,
    agents/ql_cm.py, agents/karras_diffusion.py, agents/model.py of github cccedric/cpql)."""

    hidden: tuple[int, ...] = shared("hidden", (256, 256, 256))
    activation: str = shared("activation", "mish")
    n_critics: int = shared("n_critics", 2)
    actor_lr: float = shared("actor_lr", 3e-4)
    critic_lr: float = shared("critic_lr", 3e-4)
    max_grad_norm: float = cfg.field(2.0, "global-norm clip of actor and critic gradients; 0 turns it off",
                                     cfg.non_negative)
    bc_weight: float = cfg.field(0.05, "alpha in the paper: weight of the consistency (BC) loss", cfg.non_negative)
    q_weight: float = cfg.field(1.0, "eta in the paper: weight of the -Q loss", cfg.non_negative)
    bc_loss: str = cfg.field("consistency", "consistency (the paper's loss) or reconstruction (what the released code "
                                            "optimises)", cfg.one_of(BC_LOSSES))
    # Karras grid and EDM scalings (consistency.KarrasSchedule, which checks them).
    sigma_min: float = cfg.field(0.002, "Karras/EDM noise grid: smallest sigma")
    sigma_max: float = cfg.field(80.0, "largest sigma (the start of sampling)")
    sigma_data: float = cfg.field(0.5, "EDM data std in the consistency-function scalings")
    rho: float = cfg.field(7.0, "Karras grid exponent")
    num_scales: int = cfg.field(40, "N, noise levels of the grid")
    sampling_steps: int = cfg.field(1, "network evaluations per action (1 = one-step sampling)", cfg.at_least(1))
    candidates: int = cfg.field(50, "actions sampled per state when acting; one is drawn from softmax(min-Q / "
                                    "temperature)", cfg.at_least(1))
    selection_temperature: float = cfg.field(1.0, "temperature of that softmax", cfg.positive)
    eval_selection: str = cfg.field("softmax", "deterministic acting: softmax (seeded draw) or greedy (argmax)",
                                    cfg.one_of(EVAL_SELECTIONS))
    ema_decay: float = cfg.field(0.995, "decay of the EMA copies of the policy and the critics",
                                 cfg.interval(0, 1, "[)"))
    ema_every: int = cfg.field(5, "EMA update every this many updates", cfg.at_least(1))
    ema_start: int = cfg.field(1000, "first update with an EMA step (targets stay at their initial weights before)",
                               cfg.non_negative)
    reward_scale: float = shared("reward_scale", 1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.schedule()  # validates the noise levels

    def schedule(self) -> KarrasSchedule:
        return KarrasSchedule(self.sigma_min, self.sigma_max, self.sigma_data, self.rho, self.num_scales)


@register
class CPQL(Agent):
    name = "cpql"
    Config = CPQLConfig
    description = "Consistency Policy Q-Learning: one-step consistency policy, softmax(Q) over 50 (Chen et al. 2024)"
    metric_names = ("loss/critic", "loss/actor", "loss/bc", "loss/recon", "loss/q", "q_mean")
    state_attributes = ("actor", "actor_target", "critic", "critic_target", "actor_optimizer", "critic_optimizer",
                        "num_updates", "eval_seed")

    def __init__(self, obs_dim: int, act_dim: int, config: CPQLConfig | None = None,
                 device: str | torch.device = "cpu", seed: int = 0) -> None:
        super().__init__(obs_dim, act_dim, config, device, seed)
        c = self.config
        self.schedule = c.schedule()
        self.refine_levels = self.schedule.sampling_sigmas(c.sampling_steps)[1:]
        with self.seeded_init():
            self.actor = ConsistencyNet(obs_dim, act_dim, c.hidden, c.activation).to(self.device)
            self.critic = CriticEnsemble(obs_dim, act_dim, c.hidden, c.n_critics, c.activation).to(self.device)
        self.actor_target = frozen_copy(self.actor)
        self.critic_target = frozen_copy(self.critic)
        self.actor_optimizer = adam(self.actor.parameters(), c.actor_lr, self.device)
        self.critic_optimizer = adam(self.critic.parameters(), c.critic_lr, self.device)
        self.num_updates = 0

    # Acting -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False) -> np.ndarray:
        obs_tensor = self.as_obs_tensor(obs)
        generator = self.eval_generator() if deterministic else self.generator
        greedy = deterministic and self.config.eval_selection == "greedy"
        return self._select(obs_tensor, generator, greedy).cpu().numpy()

    def _select(self, obs: torch.Tensor, generator: torch.Generator, greedy: bool) -> torch.Tensor:
        """Sample ``candidates`` actions per state and pick one by the target critics' min-Q."""
        n, (batch, act_dim) = self.config.candidates, (obs.shape[0], self.act_dim)
        repeated = obs.repeat_interleave(n, dim=0)
        particles = sample(self.actor, self.schedule, repeated, self.config.sampling_steps, generator)
        found = best_of_n(particles.view(batch, n, act_dim), obs, self.critic_target)
        if greedy:
            return found.best
        probs = torch.softmax(found.q / self.config.selection_temperature, dim=-1)
        index = torch.multinomial(probs, 1, generator=generator)
        return torch.take_along_dim(found.particles, index.view(batch, 1, 1), dim=1).squeeze(1)

    # Learning -----------------------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        critic_loss, q_mean = self._update_critic(batch)
        metrics = self._update_actor(batch)
        if self.num_updates >= c.ema_start and self.num_updates % c.ema_every == 0:
            polyak_update(self.actor_target, self.actor, 1.0 - c.ema_decay)
            polyak_update(self.critic_target, self.critic, 1.0 - c.ema_decay)
        self.num_updates += 1
        return {"loss/critic": critic_loss, "q_mean": q_mean, **metrics}

    def _update_critic(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        with torch.no_grad():
            next_actions = sample(self.actor, self.schedule, batch.next_obs, c.sampling_steps, self.generator)
            next_q = self.critic_target(batch.next_obs, next_actions).min(0).values
            target = c.reward_scale * batch.rewards + c.gamma * (1.0 - batch.terminated) * next_q
        return critic_regression_step(self.critic, self.critic_optimizer, batch.obs, batch.actions, target,
                                      c.max_grad_norm)

    def _update_actor(self, batch: Batch) -> dict[str, torch.Tensor]:
        c, schedule, generator = self.config, self.schedule, self.generator
        obs, clean = batch.obs, batch.actions
        rows = obs.shape[0]
        sigma_n, sigma_next = adjacent_noise_levels(schedule, rows, generator, obs.device)
        z = torch.randn(clean.shape, generator=generator, device=obs.device, dtype=obs.dtype)
        x_T = schedule.sigma_max * torch.randn(clean.shape, generator=generator, device=obs.device, dtype=obs.dtype)
        # f at (a + sigma_n z, sigma_n) for L_bc and at (x_T, sigma_max) for the Q term, in one forward.
        both = consistency_fn(self.actor, schedule, torch.cat([clean + sigma_n.unsqueeze(-1) * z, x_T]),
                              torch.cat([sigma_n, sigma_n.new_full((rows,), schedule.sigma_max)]),
                              torch.cat([obs, obs]))
        denoised, new_actions = both.split(rows)
        new_actions = refine(self.actor, schedule, new_actions, obs, self.refine_levels, generator)
        weight = schedule.loss_weight(sigma_n)
        recon = (weight * (denoised - clean).pow(2).mean(-1)).mean()
        if c.bc_loss == "consistency":
            with torch.no_grad():
                target = consistency_fn(self.actor_target, schedule, clean + sigma_next.unsqueeze(-1) * z,
                                        sigma_next, obs)
            bc = (weight * (denoised - target).pow(2).mean(-1)).mean()
        else:
            bc = recon
        with no_param_grads(self.critic):
            q_loss = -self.critic(obs, new_actions).min(0).values.mean()
        loss = c.bc_weight * bc + c.q_weight * q_loss
        optimizer_step(self.actor_optimizer, loss, c.max_grad_norm)
        return {"loss/actor": loss.detach(), "loss/bc": bc.detach(), "loss/recon": recon.detach(),
                "loss/q": q_loss.detach()}
