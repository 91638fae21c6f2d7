"""What SDAC and DPMD share: the Reweighted-Score-Matching actor-critic of Ma et al. (ICML 2025, arXiv 2502.00361).

The two algorithms differ only in which (noisy action, noise) pairs the policy regresses on and how they are
weighted (``policy_loss``, in sdac.py and dpmd.py). Everything else, as in the released code (docs/algorithms.md,
"SDAC"):

- Policy: a DDPM noise predictor (diffusion.py); an action is the best of ``particles`` reverse-chain samples by
  the online critics' min-Q. Data collection and evaluation use an EMA copy of the policy ("target policy"),
  the critic target and the proposals use the online one.
- Critic: twin Q trained by TD without an entropy term, y = r_scaled + gamma (1 - d) min_j Qbar_j(s', a'),
  a' = online best-of-N action + exploration noise.
- alpha: not a SAC temperature. It sets the exploration noise std (noise_scale * alpha) and the weight
  temperature lambda = alpha / q_weight_scale. Every ``alpha_update_every`` updates one Adam step on log alpha
  with gradient H(alpha) - Hbar, H = entropy of the added Gaussian noise, Hbar = -target_entropy_scale * |A|.
- Policy updates every ``policy_delay`` updates with a linearly decaying learning rate; critic targets and the
  EMA policy are Polyak-averaged every ``target_update_every`` updates. Rewards are scaled inside the update.

Deliberate differences from the released code, shared by both algorithms:
- Exploration noise is added and the result clipped to [-1, 1]: this interface promises actions in [-1, 1]
  (the released code stores the unclipped action and lets the env clamp it). Targets and proposals are
  clipped the same way, so the critic is trained and queried on the same action box.
- Deterministic acting draws the sampler noise from a generator re-seeded at every call with a per-agent
  seed (``eval_seed``), so it is a pure function of the weights and the observation batch. The released code
  derives the key from a hash of the observation; both make evaluation repeatable, ours needs no host read.
- Networks use PyTorch's default initialisation rather than Haiku's truncated normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from algorithms import config as cfg
from algorithms.base import Agent, AgentConfig, Batch
from algorithms.diffusion import NoisePredictor, diffusion_actor_critic, sample_best_of_n
from algorithms.fields import shared
from algorithms.nets import critic_regression_step, optimizer_step, polyak_update
from algorithms.schedules import check_policy_lr_window, policy_lr, set_lr
from algorithms.temperature import Temperature


@dataclass
class RSMConfig(AgentConfig):
    """Defaults: the released SDAC/DPMD code (``scripts/train_mujoco.py`` argparse; docs/algorithms.md, SDAC)."""

    # Networks: noise predictor concat(s, a_k, temb16) -> hidden -> |A| and each critic concat(s, a) -> hidden -> 1.
    hidden: tuple[int, ...] = shared("hidden", (256, 256, 256))
    activation: str = shared("activation", "mish")
    n_critics: int = shared("n_critics", 2)
    # Diffusion (relax/network/diffv2.py): T steps, betas = scale * linspace(1e-4, 0.999, T),
    # a_T ~ init_noise_scale * N(0, I).
    diffusion_steps: int = shared("diffusion_steps", 20)
    beta_schedule: str = shared("beta_schedule", "linear")
    beta_schedule_scale: float = shared("beta_schedule_scale", 0.8)
    init_noise_scale: float = shared("init_noise_scale", 0.5)
    particles: int = cfg.field(32, "best-of-N: reverse-chain samples per state, the one with the highest min-Q is "
                                   "taken (acting, critic targets, proposals)", cfg.at_least(1))
    # Optimisation. Policy lr decays linearly from policy_lr to policy_lr_end between these policy-update counts
    # (schedules.py; released scripts/train_mujoco.py:48-49 --lr 3e-4, --lr_schedule_end 3e-5; relax/algorithm/
    # dpmd.py:57-62, transition_begin 2.5e4, transition_steps 5e4).
    critic_lr: float = shared("critic_lr", 3e-4, "Adam learning rate of the twin critics")
    policy_lr: float = shared("policy_lr", 3e-4)
    policy_lr_end: float | None = shared("policy_lr_end", 3e-5)
    policy_lr_decay_begin: int = shared("policy_lr_decay_begin", 25_000)
    policy_lr_decay_end: int = shared("policy_lr_decay_end", 75_000)
    policy_delay: int = shared("policy_delay", 2)
    target_update_every: int = shared("target_update_every", 2)
    tau: float = shared("tau", 0.005)
    ema_tau: float = cfg.field(0.005, "Polyak rate of the EMA policy that acts and is evaluated", cfg.interval(0, 1))
    reward_scale: float = shared("reward_scale", 0.2)
    # alpha (docs/algorithms.md, SDAC, "α is not a temperature"): log alpha starts at ln 5;
    # noise std = noise_scale * alpha; lambda = alpha / q_weight_scale.
    init_alpha: float = shared("init_alpha", 5.0, "initial alpha (sets the exploration noise and lambda; not a SAC "
                                                  "temperature)")
    noise_scale: float = shared("noise_scale", 0.1, check=cfg.Range(lambda v: v > 0,
                                                                    "> 0 (alpha is tuned on its entropy)"))
    alpha_lr: float = shared("alpha_lr", 7e-3)
    alpha_update_every: int = shared("alpha_update_every", 250)
    target_entropy_scale: float = shared("target_entropy_scale", 0.9)
    q_weight_scale: float = cfg.field(1.0, "lambda = alpha / q_weight_scale in the weights softmax(Q / lambda)",
                                      cfg.positive)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_policy_lr_window(self)


class Draw(NamedTuple):
    """Actions of the online policy for a batch of states."""

    best: torch.Tensor    # [B, |A|] the best of N reverse-chain samples by min-Q of the online critics
    action: torch.Tensor  # [B, |A|] best + exploration noise, clipped: a sample of the acting policy

    def split(self, size: int) -> tuple[Draw, Draw]:
        return Draw(*(t[:size] for t in self)), Draw(*(t[size:] for t in self))


# Math shared by both losses -------------------------------------------------------------------------
def rsm_weights(q: torch.Tensor, alpha: torch.Tensor, q_weight_scale: float) -> torch.Tensor:
    """Self-normalised exp(Q / lambda) over the last dim (the samples of one state), lambda = alpha / scale."""
    return torch.softmax(q * (q_weight_scale / alpha), dim=-1)


def effective_sample_fraction(weights: torch.Tensor) -> torch.Tensor:
    """Kish effective sample size 1 / sum w^2 as a fraction of the group size, averaged over states:
    1 = uniform weights (no reweighting), 1/G = one sample takes all the weight."""
    return (weights.pow(2).sum(-1).reciprocal() / weights.shape[-1]).mean()


def noise_entropy(log_alpha: torch.Tensor, noise_scale: float, act_dim: int) -> torch.Tensor:
    """Entropy of N(0, (noise_scale * alpha)^2 I) in |A| dims: the released code's entropy proxy."""
    return act_dim * (0.5 * math.log(2 * math.pi * math.e) + math.log(noise_scale) + log_alpha)


class RSMAgent(Agent):
    """Base of SDAC and DPMD; subclasses define ``policy_loss`` (and ``proposal_obs`` if they need one)."""

    Config = RSMConfig
    metric_names = ("loss/critic", "loss/actor", "loss/alpha", "alpha", "q_mean", "weights/ess")
    state_attributes = ("policy", "policy_ema", "critic", "critic_target", "log_alpha",
                        "policy_optimizer", "critic_optimizer", "alpha_optimizer",
                        "num_updates", "num_policy_updates", "eval_seed", "held_metrics")

    def __init__(self, obs_dim: int, act_dim: int, config: RSMConfig | None = None,
                 device: str | torch.device = "cpu", seed: int = 0) -> None:
        super().__init__(obs_dim, act_dim, config, device, seed)
        c = self.config
        (self.policy, self.policy_ema, self.critic, self.critic_target, self.schedule, self.policy_optimizer,
         self.critic_optimizer) = diffusion_actor_critic(self, c)
        self.temperature = Temperature.from_config(c, act_dim, self.device)
        self.log_alpha, self.alpha_optimizer = self.temperature.log_alpha, self.temperature.optimizer
        self.num_updates = 0
        self.num_policy_updates = 0
        zero = torch.zeros((), device=self.device)
        # Metrics of the delayed steps, reported again until their next run (and saved, for exact resume).
        # Replaced, never mutated, so a dict handed out by state_dict() stays as it was.
        self.held_metrics = {"loss/actor": zero, "weights/ess": zero, "loss/alpha": zero}

    # Hooks of the two algorithms -------------------------------------------------------------------
    def proposal_obs(self, batch: Batch) -> torch.Tensor | None:
        """States at which ``policy_loss`` needs fresh best-of-N actions besides s' (drawn in the same pass)."""
        return None

    def policy_loss(self, batch: Batch, next_draw: Draw, proposal: Draw | None,
                    alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to minimise, effective sample fraction of its weights)."""
        raise NotImplementedError

    def after_update(self, batch: Batch, next_draw: Draw) -> None:
        """Called at the end of every update, after the critic step (DPMD keeps running Q statistics here)."""

    # Acting -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False) -> np.ndarray:
        obs_tensor = self.as_obs_tensor(obs)
        if deterministic:
            action = self._best_of_n(self.policy_ema, obs_tensor, self.eval_generator()).best
        else:
            action = self._explore(self._best_of_n(self.policy_ema, obs_tensor, self.generator).best,
                                   self.temperature.alpha())
        return action.cpu().numpy()

    def _best_of_n(self, policy: NoisePredictor, obs: torch.Tensor, generator: torch.Generator):
        c = self.config
        return sample_best_of_n(policy, self.schedule, self.critic, obs, c.particles, generator, c.init_noise_scale)

    def _explore(self, action: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return self.temperature.explore(action, alpha, self.generator)

    @torch.no_grad()
    def _draw(self, obs: torch.Tensor, alpha: torch.Tensor) -> Draw:
        candidates = self._best_of_n(self.policy, obs, self.generator)
        return Draw(candidates.best, self._explore(candidates.best, alpha))

    # Learning -----------------------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        self.num_updates += 1
        alpha = self.temperature.alpha()
        policy_due = self.num_updates % c.policy_delay == 0
        # Target actions at s' and (SDAC) proposals at s come from one reverse-chain pass of the online policy.
        proposal_obs = self.proposal_obs(batch) if policy_due else None
        if proposal_obs is None:
            next_draw, proposal = self._draw(batch.next_obs, alpha), None
        else:
            next_draw, proposal = self._draw(torch.cat([batch.next_obs, proposal_obs]), alpha).split(len(batch.next_obs))
        if policy_due:  # before the critic step: the weights use this step's pre-update critics, as released
            self.held_metrics = {**self.held_metrics, **self._update_policy(batch, next_draw, proposal, alpha)}
        critic_loss, q_mean = self._update_critic(batch, next_draw.action)
        if self.num_updates % c.target_update_every == 0:
            polyak_update(self.critic_target, self.critic, c.tau)
            polyak_update(self.policy_ema, self.policy, c.ema_tau)
        if self.num_updates % c.alpha_update_every == 0:
            self.held_metrics = {**self.held_metrics, "loss/alpha": self._update_alpha()}
        self.after_update(batch, next_draw)
        return {"loss/critic": critic_loss, "alpha": alpha, "q_mean": q_mean, **self.held_metrics}

    def _update_critic(self, batch: Batch, next_actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        with torch.no_grad():
            next_q = self.critic_target(batch.next_obs, next_actions).min(0).values
            target = c.reward_scale * batch.rewards + c.gamma * (1.0 - batch.terminated) * next_q
        return critic_regression_step(self.critic, self.critic_optimizer, batch.obs, batch.actions, target)

    def _update_policy(self, batch: Batch, next_draw: Draw, proposal: Draw | None,
                       alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        set_lr(self.policy_optimizer, policy_lr(c, self.num_policy_updates))
        loss, ess = self.policy_loss(batch, next_draw, proposal, alpha)
        optimizer_step(self.policy_optimizer, loss)
        self.num_policy_updates += 1
        return {"loss/actor": loss.detach(), "weights/ess": ess.detach()}

    def _update_alpha(self) -> torch.Tensor:
        return self.temperature.update(noise_entropy(self.log_alpha.detach(), self.config.noise_scale, self.act_dim))
