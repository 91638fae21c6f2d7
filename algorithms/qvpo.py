"""QVPO: Q-weighted Variational Policy Optimization (Ding et al., NeurIPS 2024, arXiv 2405.16173;
docs/algorithms.md, "QVPO"), as the SDAC paper's released code runs it (github mahaitongdae/diffusion_policy_online_rl,
``relax/algorithm/qvpo.py``, ``relax/network/qvpo.py``).

Idea: a diffusion policy trained by a *weighted* denoising loss on its own best samples. QVPO's bound says that
E_s[ w(s, a) * DSM loss at (s, a)] with a ~ pi and w >= 0 growing with Q is a surrogate for policy improvement,
so the policy regresses onto its own high-Q samples (no backpropagation through the chain). An entropy term does
the same on uniform actions with a small weight, which keeps the policy spread out.

Per update (``step`` = number of earlier updates, as the released step counter), defaults = the released code:
1. Critic: y = reward_scale r + gamma (1 - d) min_j Qbar_j(s', a'); a' = best of ``target_particles`` reverse-chain
   samples of the online policy by min-Q of the online (pre-update) critics (``target_action_from: online``).
   Twin Q, MSE, Adam. (``double_critic_step`` reproduces the released second Adam step with the same gradient.)
2. Every ``policy_delay`` updates (first at step 0), with the just-updated critics:
   - training sample: per state the best of ``train_particles`` chain samples of the online policy by min-Q;
   - weight w(s) = Q(s, a_best) if Q > 1 else 0 (``weighting: q_above_one``; Q in reward-scaled units, no
     normalisation), or max(Q_best - mean over the samples of Q, 0) (``advantage``, the original QVPO);
   - entropy term: ``entropy_actions`` uniform actions in [-1, 1]^|A| per state, each paired with its state and
     weight lambda_ent(step) * w(s); lambda_ent = max(min, start (1 - step / horizon)): 0.02 -> 0.002 over 180k updates;
   - loss = mean over all (1 + entropy_actions) B rows and |A| dims of w (eps_theta(s, a_k, k) - eps)^2,
     k ~ U{0..T-1}, a_k = sqrt(abar_k) a_0 + sqrt(1 - abar_k) eps. The samples and the weights are constants:
     no gradient reaches the sampler (``weight_grad_leak`` reproduces the released leak through the weights).
   - Adam on the policy, lr 3e-4 -> 5e-5 linearly between its 25k-th and 75k-th step (optax.linear_schedule
     counted in policy-optimizer updates).
3. Every ``target_update_every`` updates (first at step 0): Polyak averaging of the critic targets and the EMA policy.

Acting (training and evaluation): best of ``particles`` (``eval_particles``) chain samples of the EMA policy
(``act_with_ema``) by min-Q of the online critics, no added noise.

Departures from the released code (docs/algorithms.md, QVPO, "Departures"): its three bugs are off by default and
each is a flag (``weight_grad_leak``, ``double_critic_step``, ``entropy_obs_shuffle``); the diffusion schedule
defaults to the submission-era cosine one (``beta_schedule: linear`` with scale 0.3 is the released one); the
entropy weight of the very first update is 0.02, not the released ln 5; deterministic acting re-seeds a generator
(``eval_seed``) instead of hashing the observation; PyTorch's default initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from algorithms import config as cfg
from algorithms.base import Agent, AgentConfig, Batch, register
from algorithms.diffusion import best_of_n, diffusion_actor_critic, reverse_sample, sample_best_of_n
from algorithms.fields import shared
from algorithms.nets import critic_regression_step, no_param_grads, optimizer_step, polyak_update
from algorithms.schedules import check_policy_lr_window, policy_lr, set_lr

WEIGHTINGS = ("q_above_one", "advantage")
TARGET_ACTIONS = ("online", "target")


@dataclass
class QVPOConfig(AgentConfig):
    """Defaults: the SDAC paper's released code (``scripts/train_mujoco.py`` argparse, ``relax/algorithm/qvpo.py``,
    ``relax/network/qvpo.py`` at a50cf41; spec baselines.md 7.5.2), its bugs fixed, the cosine schedule of the
    submission era (docs/algorithms.md, QVPO)."""

    # Networks (relax/network/qvpo.py:98-100, script hidden_num 3 x 256, mish): DACERPolicyNet and twin QNet.
    hidden: tuple[int, ...] = shared("hidden", (256, 256, 256))
    activation: str = shared("activation", "mish")
    n_critics: int = shared("n_critics", 2)
    # Diffusion: T = 20 (script --diffusion_steps); cosine (Nichol-Dhariwal, s = 0.008) as GaussianDiffusion had it when
    # QVPO was added (SDAC dev repo 4f1254d..5c08c97); the release has linear x 0.3 (relax/utils/diffusion.py:83).
    diffusion_steps: int = shared("diffusion_steps", 20)
    beta_schedule: str = shared("beta_schedule", "cosine")
    beta_schedule_scale: float = shared("beta_schedule_scale", 1.0)
    init_noise_scale: float = shared("init_noise_scale", 0.5)  # a_T ~ 0.5 N(0, I) (utils/diffusion.py:109)
    # Best-of-K: all 32 in the released code (script --num_particles); the original QVPO uses 4 / 4 / 64 / 32.
    particles: int = cfg.field(32, "best-of-K when acting in training: chain samples per state, the one with the "
                                   "highest min-Q of the online critics is taken", cfg.at_least(1))
    eval_particles: int = cfg.field(32, "best-of-K for deterministic (evaluation) actions", cfg.at_least(1))
    target_particles: int = cfg.field(32, "best-of-K for the critic target's next action a'", cfg.at_least(1))
    train_particles: int = cfg.field(32, "chain samples per state from which the policy's training sample (the best "
                                         "by min-Q) is taken; with weighting=advantage also the baseline's samples",
                                     cfg.at_least(1))
    target_action_from: str = cfg.field("online", "which policy samples a' and which critics pick it: online (online "
                                                  "policy and critics, released) or target (EMA policy and target "
                                                  "critics, original QVPO)", cfg.one_of(TARGET_ACTIONS))
    act_with_ema: bool = cfg.field(True, "act and evaluate with the EMA policy (released); false: the online policy "
                                         "(original QVPO)")
    # Policy loss.
    weighting: str = cfg.field("q_above_one", "training-sample weight: q_above_one = min-Q if > 1 else 0 (released, "
                                              "Q of the reward-scaled critic, no normalisation); advantage = "
                                              "max(Q_best - mean Q of the samples, 0) (original QVPO)",
                               cfg.one_of(WEIGHTINGS))
    entropy_actions: int = cfg.field(10, "uniform actions in [-1, 1]^|A| per state in the entropy term (0: no term)",
                                     cfg.non_negative)
    entropy_weight: float = cfg.field(0.02, "lambda_ent at update 0: the entropy rows weigh lambda_ent x w(s)",
                                      cfg.non_negative)
    entropy_weight_min: float = cfg.field(0.002, "lambda_ent never falls below this", cfg.non_negative)
    entropy_weight_horizon: int = cfg.field(200_000, "lambda_ent = max(min, entropy_weight (1 - updates / horizon)): "
                                                     "the update count where the line would reach 0", cfg.at_least(1))
    # Optimisation. Critic Adam 3e-4 (script --lr); policy 3e-4 -> 5e-5 (class default lr_schedule_end), optax
    # linear_schedule(transition_begin 25k, transition_steps 50k) in policy-optimizer updates (alg/qvpo.py:55-61).
    critic_lr: float = shared("critic_lr", 3e-4, "Adam learning rate of the twin critics")
    policy_lr: float = shared("policy_lr", 3e-4)
    policy_lr_end: float | None = shared("policy_lr_end", 5e-5)
    policy_lr_decay_begin: int = shared("policy_lr_decay_begin", 25_000)
    policy_lr_decay_end: int = shared("policy_lr_decay_end", 75_000)
    adam_eps: float = cfg.field(1e-8, "Adam epsilon of the policy and critic optimizers (optax default; original "
                                      "QVPO 1e-5)", cfg.positive)
    max_grad_norm: float = cfg.field(0.0, "clip the global gradient norm of the policy and of the critics (0: none, "
                                          "released; original QVPO 2)", cfg.non_negative)
    policy_delay: int = shared("policy_delay", 2)
    target_update_every: int = shared("target_update_every", 2, "critic targets and the EMA policy are updated every "
                                                                "this many updates")
    tau: float = shared("tau", 0.005)
    ema_tau: float = cfg.field(0.005, "Polyak rate of the EMA policy", cfg.interval(0, 1))
    reward_scale: float = shared("reward_scale", 0.2)
    # The released code's bugs (spec baselines.md 7.5.5), off by default.
    weight_grad_leak: bool = cfg.field(False, "released bug: the weights are not detached, so the policy gradient "
                                              "also runs through Q and back through all train_particles x T sampler "
                                              "steps (much slower)")
    double_critic_step: bool = cfg.field(False, "released bug: a second critic Adam step with the same gradient "
                                                "every update")
    entropy_obs_shuffle: bool = cfg.field(False, "released bug: the entropy rows' states are a permutation of all "
                                                 "observation numbers (not real states) and their weights a "
                                                 "permutation unrelated to them")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_policy_lr_window(self)


# The math of the policy loss, as functions (tested on known values) ------------------------------------------------
def qvpo_weights(q: torch.Tensor, weighting: str) -> torch.Tensor:
    """Weight of each state's best sample ``[B]`` from the min-Q of its samples ``q`` ``[B, N]``."""
    best = q.max(-1).values
    if weighting == "q_above_one":  # alg/qvpo.py:117-118
        return torch.where(best > 1.0, best, torch.zeros_like(best))
    return (best - q.mean(-1)).clamp(min=0.0)  # original QVPO's "qadv" (agent/q_transform.py:43-50)


def entropy_weight(updates: int, start: float, minimum: float, horizon: int) -> float:
    """lambda_ent after ``updates`` updates: the line start (1 - updates / horizon), floored at ``minimum``."""
    return max(minimum, start * (1.0 - updates / horizon))


def entropy_rows(obs: torch.Tensor, weights: torch.Tensor, samples: int, act_dim: int, generator: torch.Generator,
                 shuffle: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(states, uniform actions in [-1, 1], weights) of the entropy term, ``samples * B`` rows; scale the weights by
    lambda_ent. Row j pairs with state j mod B and its weight. ``shuffle``: the released rows (alg/qvpo.py:122-127),
    states made of the flattened observations each repeated ``samples`` times and permuted, weights the repeated
    weights under another permutation."""
    rows = samples * obs.shape[0]
    actions = torch.rand((rows, act_dim), generator=generator, device=obs.device, dtype=obs.dtype) * 2 - 1
    if not shuffle:
        return obs.repeat(samples, 1), actions, weights.repeat(samples)
    numbers = obs.reshape(-1).repeat_interleave(samples)
    states = numbers[torch.randperm(numbers.numel(), generator=generator, device=obs.device)].view(rows, -1)
    shuffled = weights.repeat_interleave(samples)[torch.randperm(rows, generator=generator, device=obs.device)]
    return states, actions, shuffled


@register
class QVPO(Agent):
    name = "qvpo"
    Config = QVPOConfig
    description = "Q-weighted Variational Policy Optimization: Q-weighted DSM on best-of-32 samples (Ding et al. 2024)"
    metric_names = ("loss/critic", "loss/actor", "q_mean", "weights/mean", "weights/positive", "entropy_weight")
    state_attributes = ("policy", "policy_ema", "critic", "critic_target", "policy_optimizer", "critic_optimizer",
                        "num_updates", "num_policy_updates", "eval_seed", "held_metrics")

    def __init__(self, obs_dim: int, act_dim: int, config: QVPOConfig | None = None,
                 device: str | torch.device = "cpu", seed: int = 0) -> None:
        super().__init__(obs_dim, act_dim, config, device, seed)
        c = self.config
        (self.policy, self.policy_ema, self.critic, self.critic_target, self.schedule, self.policy_optimizer,
         self.critic_optimizer) = diffusion_actor_critic(self, c)
        for optimizer in (self.policy_optimizer, self.critic_optimizer):
            for group in optimizer.param_groups:
                group["eps"] = c.adam_eps
        self.num_updates = 0
        self.num_policy_updates = 0
        zero = torch.zeros((), device=self.device)
        # Metrics of the delayed policy step, reported again until its next run (saved, for exact resume).
        self.held_metrics = {"loss/actor": zero, "weights/mean": zero, "weights/positive": zero}

    # Acting -------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False) -> np.ndarray:
        c = self.config
        obs_tensor = self.as_obs_tensor(obs)
        policy = self.policy_ema if c.act_with_ema else self.policy
        particles, generator = (c.eval_particles, self.eval_generator()) if deterministic else (c.particles,
                                                                                                 self.generator)
        action = sample_best_of_n(policy, self.schedule, self.critic, obs_tensor, particles, generator,
                                  c.init_noise_scale).best
        return action.cpu().numpy()

    # Learning -----------------------------------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        step = self.num_updates  # the released step counter: the policy and the targets move at step 0, 2, 4, ...
        self.num_updates += 1
        critic_loss, q_mean = critic_regression_step(self.critic, self.critic_optimizer, batch.obs, batch.actions,
                                                     self.td_target(batch), c.max_grad_norm)
        lam = entropy_weight(step, c.entropy_weight, c.entropy_weight_min, c.entropy_weight_horizon)
        if step % c.policy_delay == 0:  # with the once-updated critics, as released (alg/qvpo.py:110-116)
            self.held_metrics = self._update_policy(batch.obs, lam)
        if c.double_critic_step:  # the released second step (alg/qvpo.py:175-176): the same gradients, Adam again
            self.critic_optimizer.step()
        if step % c.target_update_every == 0:
            polyak_update(self.critic_target, self.critic, c.tau)
            polyak_update(self.policy_ema, self.policy, c.ema_tau)
        return {"loss/critic": critic_loss, "q_mean": q_mean,
                "entropy_weight": torch.full((), lam, device=self.device), **self.held_metrics}

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        c = self.config
        policy, selector = ((self.policy, self.critic) if c.target_action_from == "online"
                            else (self.policy_ema, self.critic_target))
        next_actions = sample_best_of_n(policy, self.schedule, selector, batch.next_obs, c.target_particles,
                                        self.generator, c.init_noise_scale).best
        next_q = self.critic_target(batch.next_obs, next_actions).min(0).values
        return c.reward_scale * batch.rewards + c.gamma * (1.0 - batch.terminated) * next_q

    def training_samples(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(best of ``train_particles`` samples of the online policy per state ``[B, |A|]``, its weight ``[B]``).
        Constants, unless ``weight_grad_leak``: then the weights carry the gradient of the chain that drew them."""
        c = self.config
        with torch.set_grad_enabled(c.weight_grad_leak), no_param_grads(self.critic):
            particles = reverse_sample(self.policy, self.schedule, obs, c.train_particles, self.generator,
                                       c.init_noise_scale)
            candidates = best_of_n(particles, obs, self.critic)
            weights = qvpo_weights(candidates.q, c.weighting)
        return candidates.best.detach(), weights

    def policy_loss(self, obs: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(the weighted denoising loss, the training samples' weights)."""
        c = self.config
        actions, weights = self.training_samples(obs)
        if c.entropy_actions:
            extra_obs, extra_actions, extra_weights = entropy_rows(obs, weights, c.entropy_actions, self.act_dim,
                                                                   self.generator, c.entropy_obs_shuffle)
            all_obs = torch.cat([obs, extra_obs])
            clean = torch.cat([actions, extra_actions])
            all_weights = torch.cat([weights, lam * extra_weights])
        else:
            all_obs, clean, all_weights = obs, actions, weights
        k = self.schedule.random_steps((len(clean),), self.generator)
        noise = torch.randn(clean.shape, generator=self.generator, device=clean.device, dtype=clean.dtype)
        predicted = self.policy(all_obs, self.schedule.add_noise(clean, k, noise), k)
        loss = (all_weights.unsqueeze(-1) * (predicted - noise).pow(2)).mean()
        return loss, weights

    def _update_policy(self, obs: torch.Tensor, lam: float) -> dict[str, torch.Tensor]:
        c = self.config
        set_lr(self.policy_optimizer, policy_lr(c, self.num_policy_updates))
        loss, weights = self.policy_loss(obs, lam)
        optimizer_step(self.policy_optimizer, loss, c.max_grad_norm)
        self.num_policy_updates += 1
        weights = weights.detach()
        return {"loss/actor": loss.detach(), "weights/mean": weights.mean(),
                "weights/positive": (weights > 0).float().mean()}
