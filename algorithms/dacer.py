"""DACER: Diffusion Actor-Critic with Entropy Regulator (Wang et al., NeurIPS 2024, arXiv 2405.15177;
docs/algorithms.md, "DACER").

The policy *is* the reverse diffusion chain: a_0 = chain(s, a_T ~ N(0, I)) with T = 20 steps of the x0-clipped DDPM
sampler (VP schedule, diffusion.py), then exploration noise, a = clip(a_0 + noise_scale * alpha * xi, -1, 1).
Per update, with the released code's defaults (DACER code ``relax/algorithm/dacer.py``, github
happy-yan/DACER-Diffusion-with-Online-RL):

1. Target action a' at s' from the current policy, noise included (there is no target policy).
2. Every ``alpha_interval`` updates (first at update 0): the entropy regulator. Draw ``entropy_samples``
   noisy actions per state for ``entropy_states`` states of the batch, fit a 3-component GMM per state
   (gmm_entropy.py: host-side scikit-learn EM, which is why it runs rarely), and take one Adam step on log alpha
   with gradient H_hat - Hbar, Hbar = -target_entropy_scale |A|: alpha falls while the policy is more random
   than the target. alpha enters only through the exploration noise std. The interval is
   planned_updates // alpha_steps (150 steps, the paper's 1.5M updates / the released 10,000) when the harness sets
   ``planned_updates``, else the released fixed ``alpha_update_every`` = 10,000.
3. Every ``policy_delay`` updates (first at update 0): the policy loss -E_s[min_j Q_j(s, a(theta))] of the noisy,
   clipped action, backpropagated through every denoising step, the x0 clips and the final clip (BPTT). No
   entropy or behaviour-cloning term. Taken before the critic step, so it sees the pre-update critics, as the
   released code's jointly computed gradients do.
4. Critic: the DSAC-T distributional critic of the released code (distributional.py), or, with
   ``critic: double_q``, the plain twin-Q regression on y = r + gamma (1 - d) min_j Qbar_j(s', a') that the paper
   text describes (eq. 11). No entropy term in either target. Rewards are scaled by ``reward_scale`` inside.
5. Critic targets Polyak-averaged every ``target_update_every`` updates.

Deliberate differences from the released code:
- Deterministic acting draws the chain's noise from a generator re-seeded at every call with a per-agent seed
  (``eval_seed``); the released code derives the key from a hash of the observation. Both make evaluation a pure
  function of the weights and the observations; ours needs no host read.
- The released ``get_action`` hard-codes the noise scale (0.15, "other envs 0.1" in a comment); here it is the
  ``noise_scale`` field with per-env values in configs/dacer.yaml.
- PyTorch's default initialisation rather than Haiku's truncated normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from algorithms import config as cfg
from algorithms.base import Agent, AgentConfig, Batch, register
from algorithms.diffusion import DiffusionSchedule, NoisePredictor, reverse_sample
from algorithms.distributional import (DistributionalCritic, distributional_loss, distributional_target,
                                       running_std)
from algorithms.fields import shared
from algorithms.gmm_entropy import gmm_entropy
from algorithms.nets import (CriticEnsemble, adam, critic_regression_step, frozen_copy, no_param_grads, optimizer_step,
                             polyak_update)
from algorithms.schedules import budget_interval, check_policy_lr_window, policy_lr, set_lr
from algorithms.temperature import Temperature

CRITICS = ("distributional", "double_q")


@dataclass
class DACERConfig(AgentConfig):
    """Defaults: the released DACER code (``scripts/train_mujoco.py``, ``relax/algorithm/dacer.py``,
    ``relax/network/dacer.py``)."""

    # Networks: noise predictor concat(s, a_k, temb16) -> hidden -> |A|; each critic concat(s, a) -> hidden -> out.
    hidden: tuple[int, ...] = shared("hidden", (256, 256, 256))
    activation: str = shared("activation", "mish")
    critic: str = cfg.field("distributional", "distributional (DSAC-T mean and std, the released code) or double_q "
                                              "(the paper's eq. 11)", cfg.one_of(CRITICS))
    n_critics: int = shared("n_critics", 2)
    # Diffusion (docs/algorithms.md, "Shared machinery"): VP schedule with b_min = 0.1, b_max = 10, a_T ~ N(0, I).
    diffusion_steps: int = shared("diffusion_steps", 20)
    beta_schedule: str = shared("beta_schedule", "vp")
    beta_schedule_scale: float = shared("beta_schedule_scale", 1.0)
    init_noise_scale: float = shared("init_noise_scale", 1.0)
    policy_lr: float = shared("policy_lr", 1e-4, "Adam learning rate of the policy (the chain, trained by "
                                                 "backpropagation through it)")
    # Policy lr schedule (schedules.py). The DACER repo keeps the lr constant (scripts/train_mujoco.py:38 --lr 1e-4,
    # one Adam for everything): policy_lr_end null. The SDAC repo's copy decays it 3e-4 -> 3e-5 between policy
    # updates 25k and 75k (its relax/algorithm/dacer.py:53-58, scripts/train_mujoco.py:48-49); the window below is
    # that one, used only when policy_lr_end is set.
    policy_lr_end: float | None = shared("policy_lr_end", None)
    policy_lr_decay_begin: int = shared("policy_lr_decay_begin", 25_000)
    policy_lr_decay_end: int = shared("policy_lr_decay_end", 75_000)
    critic_lr: float = shared("critic_lr", 1e-4)
    policy_delay: int = shared("policy_delay", 2)
    target_update_every: int = shared("target_update_every", 2)
    tau: float = shared("tau", 0.005)
    # omega of the distributional critic; the released code reuses tau.
    std_ema_rate: float = cfg.field(0.005, "running-std rate of the distributional critic", cfg.interval(0, 1))
    reward_scale: float = shared("reward_scale", 0.2)
    # Entropy regulator: noise std = noise_scale * alpha.
    noise_scale: float = shared("noise_scale", 0.1, check=cfg.non_negative)
    init_alpha: float = shared("init_alpha", 3.0, "initial alpha (sets only the exploration noise)")
    alpha_lr: float = shared("alpha_lr", 0.03)
    # Entropy-regulator schedule. Released: every 10,000 updates (relax/algorithm/dacer.py:39 delay_alpha_update),
    # over the paper's 1.5M updates (3e7 env steps / 20 envs, scripts/train_mujoco.py:31,37): 150 alpha steps. With
    # alpha_steps and planned_updates both set, the interval is planned_updates // alpha_steps, so a run of another
    # length gets as many alpha steps as the paper's did (docs/algorithms.md, DACER, "Entropy-regulator schedule").
    alpha_update_every: int = shared("alpha_update_every", 10_000, "GMM entropy estimate and one Adam step on log "
                                                                   "alpha every this many updates, when alpha_steps "
                                                                   "or planned_updates is null")
    alpha_steps: int | None = cfg.field(150, "alpha steps over the run: the interval is planned_updates // "
                                             "alpha_steps when both are set; null: alpha_update_every",
                                        cfg.or_none(cfg.at_least(1)))
    # A GMM entropy estimate costs ~2-6 CPU-s (docs/benchmarks.md): a short run (a smoke test, 2,000 updates) would
    # otherwise fit one every ~13 updates and spend most of its time there. Budgets of 150k updates and more (every
    # paper protocol here) are not affected.
    alpha_min_interval: int = cfg.field(1_000, "the budget-relative interval is never shorter than this many "
                                               "updates (it bounds the cost of GMM fits in short runs)",
                                        cfg.at_least(1))
    planned_updates: int | None = shared("planned_updates", None)
    target_entropy_scale: float = shared("target_entropy_scale", 0.9)
    entropy_states: int = cfg.field(256, "states per entropy estimate", cfg.at_least(1))
    entropy_samples: int = cfg.field(200, "actions sampled per state for the GMM fit")
    gmm_components: int = cfg.field(3, "components of the GMM whose entropy estimates the policy's", cfg.at_least(1))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_policy_lr_window(self)
        cfg.check(self.entropy_samples >= self.gmm_components,
                  f"entropy_samples must be >= gmm_components ({self.gmm_components}), got {self.entropy_samples}")


@register
class DACER(Agent):
    name = "dacer"
    Config = DACERConfig
    description = "Diffusion Actor-Critic with Entropy Regulator: BPTT through the chain, GMM entropy (Wang et al. 2024)"
    metric_names = ("loss/critic", "loss/actor", "loss/alpha", "alpha", "entropy", "q_mean", "q_std")
    state_attributes = ("policy", "critic", "critic_target", "log_alpha", "policy_optimizer", "critic_optimizer",
                        "alpha_optimizer", "omega", "entropy", "num_updates", "eval_seed", "held_metrics")

    def __init__(self, obs_dim: int, act_dim: int, config: DACERConfig | None = None,
                 device: str | torch.device = "cpu", seed: int = 0) -> None:
        super().__init__(obs_dim, act_dim, config, device, seed)
        c = self.config
        with self.seeded_init():
            self.policy = NoisePredictor(obs_dim, act_dim, c.diffusion_steps, c.hidden, c.activation).to(self.device)
            if c.critic == "distributional":
                self.critic = DistributionalCritic(obs_dim, act_dim, c.hidden, c.n_critics, c.activation)
            else:
                self.critic = CriticEnsemble(obs_dim, act_dim, c.hidden, c.n_critics, c.activation)
            self.critic = self.critic.to(self.device)
        self.critic_target = frozen_copy(self.critic)
        self.schedule = DiffusionSchedule.build(c.beta_schedule, c.diffusion_steps, c.beta_schedule_scale).to(self.device)
        self.temperature = Temperature.from_config(c, act_dim, self.device)
        self.log_alpha, self.alpha_optimizer = self.temperature.log_alpha, self.temperature.optimizer
        self.target_entropy = self.temperature.target_entropy
        self.policy_optimizer = adam(self.policy.parameters(), c.policy_lr, self.device)
        self.critic_optimizer = adam(self.critic.parameters(), c.critic_lr, self.device)
        # Updates between entropy estimates (and alpha steps), fixed for the run.
        self.alpha_interval = budget_interval(c.planned_updates, c.alpha_steps, c.alpha_update_every)
        if c.planned_updates is not None and c.alpha_steps is not None:
            self.alpha_interval = max(self.alpha_interval, c.alpha_min_interval)
        # Running mean of each critic's std (distributional critic); negative = not started yet.
        self.omega = torch.full((c.n_critics,), -1.0, device=self.device)
        self.entropy = torch.zeros((), device=self.device)  # the last GMM estimate, reported until the next one
        self.num_updates = 0
        zero = torch.zeros((), device=self.device)
        # Metrics of the delayed steps, reported again until their next run (replaced, never mutated).
        self.held_metrics = {name: zero for name in self.metric_names if name.startswith("loss/") and name != "loss/critic"}

    # Acting -----------------------------------------------------------------------------------------
    def sample(self, obs: torch.Tensor, generator: torch.Generator, alpha: torch.Tensor | float,
               visited: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``[B, |A|]`` noisy clipped actions of the policy; differentiable unless under no_grad (BPTT)."""
        c = self.config
        action = reverse_sample(self.policy, self.schedule, obs, 1, generator, c.init_noise_scale, visited).squeeze(1)
        return self.temperature.explore(action, alpha, generator)

    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False) -> np.ndarray:
        obs_tensor = self.as_obs_tensor(obs)
        if deterministic:  # alpha -> 0: no added noise; the chain's own noise from a fixed seed
            action = self.sample(obs_tensor, self.eval_generator(), 0.0)
        else:
            action = self.sample(obs_tensor, self.generator, self.temperature.alpha())
        return action.cpu().numpy()

    # Learning -----------------------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        step = self.num_updates
        alpha = self.temperature.alpha()
        with torch.no_grad():
            next_actions = self.sample(batch.next_obs, self.generator, alpha)
        if step % self.alpha_interval == 0:
            self.entropy = self.estimate_entropy(batch.obs, alpha)
            self.held_metrics = {**self.held_metrics, "loss/alpha": self._update_alpha(self.entropy)}
        if step % c.policy_delay == 0:
            self.held_metrics = {**self.held_metrics, **self._update_policy(batch.obs, alpha)}
        critic_loss, q_mean, q_std = self._update_critic(batch, next_actions)
        if step % c.target_update_every == 0:
            polyak_update(self.critic_target, self.critic, c.tau)
        self.num_updates += 1
        return {"loss/critic": critic_loss, "alpha": alpha, "entropy": self.entropy, "q_mean": q_mean,
                "q_std": q_std, **self.held_metrics}

    def q_values(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``[n, B]`` Q estimates of the online critics (the means of the distributional one)."""
        out = self.critic(obs, actions)
        return out.mean if self.config.critic == "distributional" else out

    def min_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """min_j Q_j(s, a), differentiable in ``actions`` only (the critic's weights get no gradient)."""
        with no_param_grads(self.critic):
            return self.q_values(obs, actions).min(0).values

    def policy_loss(self, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, extra metrics): -E[min Q] of a fresh noisy action, with the graph through the whole chain."""
        return -self.min_q(obs, self.sample(obs, self.generator, alpha)).mean(), {}

    def _update_policy(self, obs: torch.Tensor, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        # This is policy update number num_updates // policy_delay (the first at update 0): the count optax's
        # schedule sees in the SDAC repo's copy, whose policy optimizer state advances only on policy updates.
        set_lr(self.policy_optimizer, policy_lr(self.config, self.num_updates // self.config.policy_delay))
        loss, extra = self.policy_loss(obs, alpha)
        optimizer_step(self.policy_optimizer, loss)
        return {"loss/actor": loss.detach(), **extra}

    def _update_critic(self, batch: Batch, next_actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c = self.config
        rewards = c.reward_scale * batch.rewards
        discount = c.gamma * (1.0 - batch.terminated)
        if c.critic == "double_q":
            with torch.no_grad():
                target = rewards + discount * self.critic_target(batch.next_obs, next_actions).min(0).values
            loss, q_mean = critic_regression_step(self.critic, self.critic_optimizer, batch.obs, batch.actions, target)
            return loss, q_mean, torch.zeros_like(q_mean)
        target = distributional_target(self.critic_target, batch.next_obs, next_actions, rewards, discount, self.generator)
        dist = self.critic(batch.obs, batch.actions)
        self.omega = running_std(self.omega, dist.std, c.std_ema_rate)
        loss = distributional_loss(dist, target, self.omega)
        optimizer_step(self.critic_optimizer, loss)
        return loss.detach(), dist.mean.detach().mean(), dist.std.detach().mean()

    # Entropy regulator --------------------------------------------------------------------------------
    @torch.no_grad()
    def estimate_entropy(self, obs: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
        """GMM entropy of the noisy policy, averaged over the first ``entropy_states`` states of ``obs``.

        The one host round trip of this agent: scikit-learn's EM runs on the CPU. It happens once every
        ``alpha_interval`` updates (10,000 at the DACER protocol's 1.5M updates), not in the per-step path.
        """
        c = self.config
        obs = obs[:c.entropy_states]
        actions = reverse_sample(self.policy, self.schedule, obs, c.entropy_samples, self.generator, c.init_noise_scale)
        actions = self.temperature.explore(actions, alpha, self.generator)
        return torch.tensor(gmm_entropy(actions.cpu().numpy(), c.gmm_components), device=self.device)

    def _update_alpha(self, entropy: torch.Tensor) -> torch.Tensor:
        return self.temperature.update(entropy)
