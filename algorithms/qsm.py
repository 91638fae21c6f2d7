"""QSM: Q-Score Matching (Psenka, Escontrela, Abbeel, Ma; ICML 2024, arXiv 2312.11752; docs/algorithms.md, "QSM").

Idea: the score of the Boltzmann policy pi(a|s) ∝ exp(Q(s, a)) is grad_a Q(s, a), so a score model can be trained
by regressing it onto the critic's action-gradient, with no backpropagation through the sampler.

Two variants, chosen by ``sampler``:

``langevin`` (default): QSM as the SDAC paper's released code runs it (github mahaitongdae/diffusion_policy_online_rl,
commit a50cf41: relax/algorithm/qsm.py, relax/network/qsm.py, relax/utils/langevin.py). Not a diffusion policy:
- Score network psi(s, a): MLP on concat(s, a), 3 x 256 ReLU, |A| outputs, no time input.
- Sampler: x ~ N(0, I); for j = 0..T-1 (T = 20): delta_j = 1 - j/T,
  x <- clip(x + (delta_j / 2) psi(s, x) + sqrt(delta_j) xi_j, -1, 1), xi_j ~ N(0, I). No noise-free last step.
- Best of K = 32 chains per state by min_j Q_j of the online critics: acting, critic targets and evaluation.
- Score target: grad_a Q_j(s, a) at the replay action a, of the critic j with the smaller Q_j(s, a) there (per
  sample), from the just-updated critics; loss mean over (state, dim) of (psi(s, a) - target)^2.

``ddpm``: the original QSM of its authors (github Alescontrela/score_matching_rl, commit 2e77893,
jaxrl5/agents/score_matching/score_matching_learner.py, jaxrl5/networks/diffusion.py):
- Noise predictor eps_theta(s, a_k, k) (diffusion.NoisePredictor), T = 5 steps of the VP schedule.
- Sampler: a_T ~ N(0, I); a_{k-1} = clip((a_k - beta_k / sqrt(1 - abar_k) eps_theta) / sqrt(1 - beta_k)
  + sqrt(beta_k) z, -1, 1) (no noise at k = 0), i.e. the iterate itself is clipped after every step.
- One sample per state (K = 1) plus N(0, 0.1^2), clipped, for acting and for the critic-target action.
- Score target at a *noised* replay action a_k = sqrt(abar_k) a + sqrt(1 - abar_k) eps, k ~ U{0..T-1}:
  -M_q * mean_j grad_a Q_j(s, a_k), M_q = 50 (the minus sign: an eps-predictor points away from the data).

Per update (both variants): the critic-target action a' at s' from the pre-update score net and critics;
y = reward_scale r + gamma (1 - d) min_j Qbar_j(s', a'); one critic step; one score step on the just-updated
critics' gradients; Polyak tau = 0.005 on the critic targets. No delays, no target score net, no temperature.

Differences from the released code: PyTorch's default initialisation; deterministic acting draws the chains' noise
from a generator re-seeded on every call (the released code uses the fixed key 0 for every call: the same idea);
the critic with the smaller Q is chosen by argmin (a tie picks the first critic; relax picks the second).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from algorithms import config as cfg
from algorithms.base import Agent, AgentConfig, Batch, register
from algorithms.diffusion import DiffusionSchedule, NoisePredictor, beta_schedule, best_of_n
from algorithms.fields import shared
from algorithms.nets import (ACTIVATIONS, CriticEnsemble, activation_buffers, adam, critic_regression_step,
                             frozen_copy, layers_into_buffers, mlp, no_param_grads, optimizer_step, polyak_update)
from algorithms.schedules import linear_decay

SAMPLERS = ("langevin", "ddpm")
LR_SCHEDULES = ("constant", "linear", "cosine")
TARGET_CRITICS = ("min", "mean")


@dataclass
class QSMConfig(AgentConfig):
    """Defaults: the released SDAC/DPMD code's QSM (scripts/train_mujoco.py argparse defaults, relax/algorithm/qsm.py,
    relax/network/qsm.py). The original QSM is the ``standard`` layer in docs/algorithms.md, "QSM"."""

    # Networks. relax: score net and critics both hidden_sizes = [256] * 3 (script:42-43,80,119), ReLU (the
    # activation default of create_qsm_net, net/qsm.py:68). Original: 512-512, Mish actor, ReLU critics.
    hidden: tuple[int, ...] = shared("hidden", (256, 256, 256), "hidden widths of the score network (ddpm: the noise "
                                                                "predictor) and of each critic")
    activation: str = shared("activation", "relu", "hidden activation of the critics")
    score_activation: str = cfg.field("relu", "hidden activation of the score network / noise predictor",
                                      cfg.one_of(sorted(ACTIVATIONS)))
    n_critics: int = shared("n_critics", 2)
    # Sampler.
    sampler: str = cfg.field("langevin", "langevin: time-free score net, annealed Langevin chain (the SDAC paper's "
                                         "QSM); ddpm: noise predictor and DDPM chain (the original QSM)",
                             cfg.one_of(SAMPLERS))
    langevin_steps: int = cfg.field(20, "T of the Langevin chain, step size 1 - j/T at step j (sampler: langevin)",
                                    cfg.at_least(1))  # hard-coded num_timesteps=20, script:119
    diffusion_steps: int = shared("diffusion_steps", 5, "T, denoising steps of the DDPM chain (sampler: ddpm)")
    beta_schedule: str = shared("beta_schedule", "vp", "noise schedule of the DDPM chain: linear, vp or cosine "
                                                      "(sampler: ddpm)")
    beta_schedule_scale: float = shared("beta_schedule_scale", 1.0, "betas of the DDPM chain are multiplied by this "
                                                                    "(sampler: ddpm)")
    init_noise_scale: float = shared("init_noise_scale", 1.0)  # x ~ N(0, I): langevin.py:17 / diffusion.py:99
    particles: int = cfg.field(32, "best-of-K: chains per state, the one with the highest min-Q of the online critics "
                                   "is taken (acting, critic targets, evaluation)", cfg.at_least(1))  # script:53
    action_noise: float = cfg.field(0.0, "std of the Gaussian added (then clipped) to the sampled action when "
                                         "exploring and in the critic target; 0: none (relax), 0.1: the original",
                                    cfg.non_negative)
    # Score target.
    q_grad_scale: float = cfg.field(1.0, "M_q, the critic's action-gradient is multiplied by this in the score "
                                         "target (relax: 1; the original: 50)", cfg.positive)
    score_target_critic: str = cfg.field("min", "whose action-gradient is the target: min (per sample, the critic "
                                                "with the smaller Q, relax) or mean (of all critics, the original)",
                                         cfg.one_of(TARGET_CRITICS))
    # Optimisation. relax: optax.linear_schedule(3e-4, 3e-5, transition_steps=5e4, transition_begin=2.5e4) counted
    # in score updates (alg/qsm.py:29-35, end value --lr_schedule_end script:49,120); critics Adam 3e-4 constant.
    critic_lr: float = shared("critic_lr", 3e-4)
    score_lr: float = cfg.field(3e-4, "Adam learning rate of the score network at the start of its schedule",
                                cfg.positive)
    score_lr_end: float = cfg.field(3e-5, "score learning rate at the end of its schedule", cfg.non_negative)
    score_lr_schedule: str = cfg.field("linear", "constant (score_lr throughout), linear or cosine from score_lr "
                                                 "to score_lr_end between the two decay counts", cfg.one_of(LR_SCHEDULES))
    score_lr_decay_begin: int = cfg.field(25_000, "score update count where the decay starts", cfg.non_negative)
    score_lr_decay_end: int = cfg.field(75_000, "score update count where the decay ends", cfg.at_least(1))
    tau: float = shared("tau", 0.005)
    reward_scale: float = shared("reward_scale", 1.0)  # no scaling: alg/qsm.py:60

    def __post_init__(self) -> None:
        super().__post_init__()
        cfg.check(self.score_lr_decay_begin < self.score_lr_decay_end,
                  f"need score_lr_decay_begin < score_lr_decay_end, got {self.score_lr_decay_begin} >= "
                  f"{self.score_lr_decay_end}")


# The score network of the Langevin variant ---------------------------------------------------------------
class ScoreNet(nn.Module):
    """psi(s, a): MLP on concat(s, a) -> |A|, no time input (relax QScoreNet, net/blocks.py:152-163).

    ``field`` serves the sampling chain: the obs part of the first layer is the same at every step and for every
    chain of a state, so it is computed once, and each step costs one ``[rows, |A|]`` matmul in the first layer."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], act: str) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.net = mlp(obs_dim + act_dim, hidden, act_dim, act)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1))

    def field(self, obs: torch.Tensor, particles: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """psi(s, x) for the ``len(obs) * particles`` rows of a chain (each state repeated ``particles`` times)."""
        first, rest = self.net[0], self.net[1:]
        obs_features = F.linear(obs, first.weight[:, :self.obs_dim], first.bias).repeat_interleave(particles, dim=0)
        action_weight = first.weight[:, self.obs_dim:].t()
        if torch.is_grad_enabled():
            return lambda x, step: rest(torch.addmm(obs_features, x, action_weight))
        buffers = activation_buffers(obs_features, self.net)
        rows, width = obs_features.shape

        def score(x: torch.Tensor, step: int) -> torch.Tensor:
            pre = torch.addmm(obs_features, x, action_weight, out=buffers[0][:rows * width].view(rows, width))
            return layers_into_buffers(rest, pre, (buffers[1], buffers[0]))
        return score


# Samplers: [B, particles, |A|] ---------------------------------------------------------------------------
def langevin_sample(score: Callable[[torch.Tensor, int], torch.Tensor], rows: int, act_dim: int, steps: int,
                    generator: torch.Generator, device: torch.device, init_scale: float = 1.0) -> torch.Tensor:
    """The annealed Langevin chain of relax/utils/langevin.py:14-36, on ``rows`` independent chains:
    x ~ init_scale N(0, I); for j = 0..T-1: delta = 1 - j/T, x <- clip(x + delta/2 score(x) + sqrt(delta) xi_j, -1, 1)."""
    x = init_scale * torch.randn((rows, act_dim), generator=generator, device=device)
    noise = torch.randn((steps, rows, act_dim), generator=generator, device=device)
    for j in range(steps):
        delta = 1.0 - j / steps
        x = x.add_(score(x, j), alpha=delta / 2).add_(noise[j], alpha=math.sqrt(delta)).clamp_(-1.0, 1.0)
    return x


class DDPMStep:
    """Host-side coefficients of the original QSM's DDPM step (jaxrl5/networks/diffusion.py:84-94) for k = 0..T-1:
    a_{k-1} = clip(a_k / sqrt(alpha_k) - beta_k / (sqrt(alpha_k) sqrt(1 - abar_k)) eps + [k > 0] sqrt(beta_k) z)."""

    def __init__(self, betas: torch.Tensor) -> None:
        betas = betas.to(torch.float64)
        alpha_bar = torch.cumprod(1.0 - betas, 0)
        self.coefficients = [(float((1.0 - b).rsqrt()), float(b / ((1.0 - b).sqrt() * (1.0 - ab).sqrt())),
                              float(b.sqrt()) if k > 0 else 0.0)
                             for k, (b, ab) in enumerate(zip(betas, alpha_bar))]


def ddpm_sample(eps: Callable[[torch.Tensor, int], torch.Tensor], steps: DDPMStep, rows: int, act_dim: int,
                generator: torch.Generator, device: torch.device, init_scale: float = 1.0) -> torch.Tensor:
    """The original QSM's DDPM sampler with the iterate clipped to [-1, 1] after every step (clip_sampler=True)."""
    x = init_scale * torch.randn((rows, act_dim), generator=generator, device=device)
    noise = torch.randn((len(steps.coefficients), rows, act_dim), generator=generator, device=device)
    for k in reversed(range(len(steps.coefficients))):
        scale, eps_coef, noise_std = steps.coefficients[k]
        x = (x * scale).sub_(eps(x, k), alpha=eps_coef).add_(noise[k], alpha=noise_std).clamp_(-1.0, 1.0)
    return x


# The regression target -----------------------------------------------------------------------------------
def critic_action_gradient(critic: CriticEnsemble, obs: torch.Tensor, actions: torch.Tensor,
                           which: str = "min") -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_a Q at ``actions`` [B, |A|], Q [n, B]), detached. ``which``: min = per sample, the gradient of the critic
    whose Q is smallest there (relax alg/qsm.py:77-81); mean = the mean of all critics' gradients (original
    score_matching_learner.py:263-271). Each member's gradient comes from one backward pass: member j sees only its
    own copy of the actions."""
    n = critic.n
    points = actions.detach().unsqueeze(0).expand(n, *actions.shape).clone().requires_grad_(True)
    with torch.enable_grad(), no_param_grads(critic):
        q = critic(obs.unsqueeze(0).expand(n, *obs.shape), points)
        (grads,) = torch.autograd.grad(q.sum(), points)
    q = q.detach()
    if which == "mean":
        return grads.mean(0), q
    pick = q.argmin(0).view(1, -1, 1).expand(1, *actions.shape)
    return torch.gather(grads, 0, pick).squeeze(0), q


def score_lr(step: int, config: QSMConfig) -> float:
    """The score network's learning rate at its ``step``-th update (0-based, as optax counts)."""
    c = config
    if c.score_lr_schedule == "constant":
        return c.score_lr
    if c.score_lr_schedule == "linear":  # optax.linear_schedule
        return linear_decay(step, c.score_lr, c.score_lr_end, c.score_lr_decay_begin, c.score_lr_decay_end)
    # optax.cosine_decay_schedule(score_lr, decay_steps, alpha=score_lr_end / score_lr) when decay_begin = 0
    done = min(max(step - c.score_lr_decay_begin, 0) / (c.score_lr_decay_end - c.score_lr_decay_begin), 1.0)
    return c.score_lr_end + (c.score_lr - c.score_lr_end) * 0.5 * (1.0 + math.cos(math.pi * done))


@register
class QSM(Agent):
    name = "qsm"
    Config = QSMConfig
    description = "Q-Score Matching: score net regressed on grad_a Q, Langevin best-of-32 (Psenka et al. 2024)"
    metric_names = ("loss/critic", "loss/actor", "q_mean", "q_grad_norm")
    state_attributes = ("score", "critic", "critic_target", "score_optimizer", "critic_optimizer", "num_updates",
                        "eval_seed")

    def __init__(self, obs_dim: int, act_dim: int, config: QSMConfig | None = None,
                 device: str | torch.device = "cpu", seed: int = 0) -> None:
        super().__init__(obs_dim, act_dim, config, device, seed)
        c = self.config
        with self.seeded_init():
            if c.sampler == "langevin":
                self.score = ScoreNet(obs_dim, act_dim, c.hidden, c.score_activation)
            else:
                self.score = NoisePredictor(obs_dim, act_dim, c.diffusion_steps, c.hidden, c.score_activation)
            self.score = self.score.to(self.device)
            self.critic = CriticEnsemble(obs_dim, act_dim, c.hidden, c.n_critics, c.activation).to(self.device)
        self.critic_target = frozen_copy(self.critic)
        if c.sampler == "ddpm":
            betas = beta_schedule(c.beta_schedule, c.diffusion_steps, c.beta_schedule_scale)
            self.schedule = DiffusionSchedule(betas).to(self.device)
            self.ddpm_steps = DDPMStep(betas)
        self.score_optimizer = adam(self.score.parameters(), c.score_lr, self.device)
        self.critic_optimizer = adam(self.critic.parameters(), c.critic_lr, self.device)
        self.num_updates = 0

    # Acting -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False) -> np.ndarray:
        obs_tensor = self.as_obs_tensor(obs)
        if deterministic:
            return self.best_action(obs_tensor, self.eval_generator()).cpu().numpy()
        return self._explore(self.best_action(obs_tensor, self.generator)).cpu().numpy()

    def sample(self, obs: torch.Tensor, particles: int, generator: torch.Generator) -> torch.Tensor:
        """``[B, particles, |A|]`` chain samples; all chains of all states run as one batch of B * particles rows."""
        c, rows = self.config, len(obs) * particles
        if c.sampler == "langevin":
            actions = langevin_sample(self.score.field(obs, particles), rows, self.act_dim, c.langevin_steps,
                                      generator, self.device, c.init_noise_scale)
        else:
            actions = ddpm_sample(self.score.denoiser(obs, particles), self.ddpm_steps, rows, self.act_dim,
                                  generator, self.device, c.init_noise_scale)
        return actions.view(len(obs), particles, self.act_dim)

    @torch.no_grad()
    def best_action(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Best of ``particles`` chain samples per state by min-Q of the online critics (relax net/qsm.py:33-48)."""
        candidates = self.sample(obs, self.config.particles, generator)
        if self.config.particles == 1:
            return candidates.squeeze(1)
        return best_of_n(candidates, obs, self.critic).best

    def _explore(self, action: torch.Tensor) -> torch.Tensor:
        if self.config.action_noise == 0:
            return action
        noise = torch.randn(action.shape, generator=self.generator, device=action.device)
        return (action + self.config.action_noise * noise).clamp_(-1.0, 1.0)

    # Learning -----------------------------------------------------------------------------------------------
    def score_target(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                torch.Tensor | None]:
        """(network input actions, regression target, step indices or None) for the replay ``actions``."""
        c = self.config
        if c.sampler == "langevin":
            grads, _ = critic_action_gradient(self.critic, obs, actions, c.score_target_critic)
            return actions, c.q_grad_scale * grads, None
        k = self.schedule.random_steps((len(obs),), self.generator)
        noise = torch.randn(actions.shape, generator=self.generator, device=actions.device)
        noisy = self.schedule.add_noise(actions, k, noise)
        grads, _ = critic_action_gradient(self.critic, obs, noisy, c.score_target_critic)
        return noisy, -c.q_grad_scale * grads, k

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        # 1. Critic: a' from the pre-update score net and online critics (alg/qsm.py:56-60).
        with torch.no_grad():
            next_actions = self._explore(self.best_action(batch.next_obs, self.generator))
            next_q = self.critic_target(batch.next_obs, next_actions).min(0).values
            target = c.reward_scale * batch.rewards + c.gamma * (1.0 - batch.terminated) * next_q
        critic_loss, q_mean = critic_regression_step(self.critic, self.critic_optimizer, batch.obs, batch.actions,
                                                     target)
        # 2. Score: regress on the just-updated critics' action-gradient (alg/qsm.py:76-88).
        for group in self.score_optimizer.param_groups:
            group["lr"] = score_lr(self.num_updates, c)
        inputs, score_target, k = self.score_target(batch.obs, batch.actions)
        prediction = self.score(batch.obs, inputs) if k is None else self.score(batch.obs, inputs, k)
        loss = (prediction - score_target).pow(2).mean()
        optimizer_step(self.score_optimizer, loss)
        # 3. Critic targets, every update (alg/qsm.py:91-92).
        polyak_update(self.critic_target, self.critic, c.tau)
        self.num_updates += 1
        grad_norm = score_target.norm(dim=-1).mean() / c.q_grad_scale
        return {"loss/critic": critic_loss, "loss/actor": loss.detach(), "q_mean": q_mean, "q_grad_norm": grad_norm}
