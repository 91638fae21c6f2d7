"""SDAC: Soft Diffusion Actor-Critic (Ma, Chen, Wang, Li, Dai; ICML 2025, arXiv 2502.00361;
docs/algorithms.md, "SDAC").

Target policy: pi~(a|s) ∝ exp(Q(s, a) / lambda), the soft-optimal policy. Its noise-perturbed score is matched
by *reverse-sampling* score matching: for a noisy action a_k, draw K "clean" actions from the Gaussian reverse
of the forward kernel, a0_i = (a_k - sqrt(1 - abar_k) eps_i) / sqrt(abar_k), and regress eps_theta(s, a_k, k)
on the eps_i with self-normalised weights w_i = softmax_i(Q(s, clip(a0_i)) / lambda). No backpropagation
through the sampling chain; the cost is K critic evaluations per state plus one policy forward/backward.

Per update, with the released code's defaults (its ``scripts/train_mujoco.py`` argparse):
1. Critic (every update): y = 0.2 r + gamma (1 - d) min_j Qbar_j(s', a'), a' = online best-of-32 + noise.
2. Policy (every 2nd update, before the critic step so the weights use the pre-update critics):
   a_0 = online best-of-32 action at s + noise; one k ~ U{0..T-1} and eps per state; a_k = q_k(a_0) sample;
   K = 64 reverse samples a0_i, clipped to [-1, 1] for the Q evaluation only (the regression targets stay
   the eps_i); lambda = alpha / 5; eps_theta(s, a_k, k) regresses on sum_i w_i eps_i.
3. Targets and the EMA policy (which acts and is evaluated) are Polyak-averaged every 2nd update; alpha steps
   every 250 updates (see rsm.py for the shared pieces: critic, alpha, acting, lr schedule).

Differences from the released code: the shared ones listed in rsm.py, and the form of the loss. The released
loss is mean over (state, sample, dim) of w_i (eps_theta - eps_i)^2 with eps_theta evaluated on K identical
copies of (s, a_k, k). Since the w_i sum to one per state, sum_i w_i ||eps_theta - eps_i||^2 equals
||eps_theta - sum_i w_i eps_i||^2 plus a constant (the weighted spread of the eps_i), so we regress once per
state on the weighted-mean target (docs/algorithms.md, SDAC, "Departures"): the gradient is the released one
times K = 64, which Adam cancels (up to its epsilon), the logged loss is the reducible part only (0 = perfect fit),
and the policy forward/backward runs on B rows instead of B * K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms import config as cfg
from algorithms.base import Batch, register
from algorithms.rsm import Draw, RSMAgent, RSMConfig, effective_sample_fraction, rsm_weights


@dataclass
class SDACConfig(RSMConfig):
    # K, hard-coded "reverse_mc_num" in the released sdac.py.
    reverse_samples: int = cfg.field(64, "K, reverse-chain samples per state that the score-matching loss is "
                                         "weighted over", cfg.at_least(1))
    q_weight_scale: float = cfg.redefault(RSMConfig, "q_weight_scale", 5.0)  # lambda = alpha / 5


@register
class SDAC(RSMAgent):
    name = "sdac"
    Config = SDACConfig
    description = "Soft Diffusion Actor-Critic: reverse-sampling score matching, best-of-N (Ma et al. 2025)"

    def proposal_obs(self, batch: Batch) -> torch.Tensor:
        return batch.obs

    def policy_loss(self, batch: Batch, next_draw: Draw, proposal: Draw | None,
                    alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        schedule, generator, samples = self.schedule, self.generator, self.config.reverse_samples
        obs, clean = batch.obs, proposal.action
        states, act_dim = clean.shape
        with torch.no_grad():
            k = schedule.random_steps((states,), generator)
            noisy = schedule.add_noise(clean, k, torch.randn(clean.shape, generator=generator, device=clean.device))
            reverse_noise = torch.randn((states, samples, act_dim), generator=generator, device=clean.device)
            reverse_clean = schedule.predict_x0(noisy.unsqueeze(1), k.unsqueeze(1), reverse_noise).clamp_(-1.0, 1.0)
            q = self.critic(obs.repeat_interleave(samples, dim=0), reverse_clean.view(-1, act_dim)).min(0).values
            weights = rsm_weights(q.view(states, samples), alpha, self.config.q_weight_scale)
            target = (weights.unsqueeze(-1) * reverse_noise).sum(1)
        loss = (self.policy(obs, noisy, k) - target).pow(2).mean()
        return loss, effective_sample_fraction(weights)
