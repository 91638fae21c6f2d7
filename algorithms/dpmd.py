"""DPMD: Diffusion Policy Mirror Descent (Ma, Chen, Wang, Li, Dai; ICML 2025, arXiv 2502.00361;
docs/algorithms.md, "DPMD").

Target policy: pi~(a|s) ∝ pi_old(a|s) exp(Q(s, a) / lambda), the closed-form solution of
max_pi E_pi[Q] - lambda KL(pi || pi_old): one mirror-descent step. Its score is matched by Q-weighted
denoising score matching on samples of the old policy: a_0 ~ pi_old(.|s), k ~ U{0..T-1}, eps ~ N(0, I),
loss = E[w(s, a_0) ||eps_theta(sqrt(abar_k) a_0 + sqrt(1 - abar_k) eps, s, k) - eps||^2] with weights
exp(Q(s, a_0) / lambda) self-normalised over the samples of each state, lambda = alpha.

pi_old is the released code's: the current policy's acting rule, best-of-N by min-Q plus exploration noise
N(0, (0.1 alpha)^2), at the next states s' of the batch (the draw the critic target needs anyway, so DPMD
runs one reverse chain per update). Its Q-greedy selection is what drives most of the improvement (docs/algorithms.md,
DPMD, "A property worth knowing").

This implements the intended math (docs/algorithms.md, DPMD, "Departures from the released code"), not the
released code's two bugs:
1. The released critic Adam step is applied twice per update with the same gradient (the Adam state advances
   twice): here the critic takes one step per update, like SDAC.
2. The released weights are exp(clip(q - mu_run / sigma_run, -3, 3) / alpha): the precedence bug makes the
   clipped value +3 once |Q| >> 3, so every weight is the same constant and the loss is plain behaviour cloning
   of the one best-of-32 + noise action per state. Here the weights are softmax(Q / lambda) over a group of
   ``old_policy_samples`` (G) samples of pi_old per state, as the RSM derivation asks (flowrl does the same).

The group: G exploration-noise draws around the state's best-of-N action, i.e. G samples of pi_old given that
reverse-chain draw (one chain per state, not G: the chain is the cost of an update). So the weights are
normalised within each state conditionally on its particle draw. G is not in the released code (it has one
sample per state); with lambda -> inf the loss is the released behaviour cloning of best-of-N + noise, with
G samples per state instead of one. The policy forward/backward and the weight critic pass run on B * G rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms import config as cfg
from algorithms.base import Batch, register
from algorithms.rsm import Draw, RSMAgent, RSMConfig, effective_sample_fraction, rsm_weights


@dataclass
class DPMDConfig(RSMConfig):
    q_weight_scale: float = cfg.field(1.0, "lambda = alpha / q_weight_scale in the weights exp(Q / lambda)",
                                      cfg.positive)  # lambda = alpha
    # Released code: 1, with unnormalised weights.
    old_policy_samples: int = cfg.field(16, "G, samples of the old policy per state for the self-normalised weights",
                                        cfg.at_least(1))


@register
class DPMD(RSMAgent):
    name = "dpmd"
    Config = DPMDConfig
    description = "Diffusion Policy Mirror Descent: Q-weighted score matching on old-policy samples (Ma et al. 2025)"

    def policy_loss(self, batch: Batch, next_draw: Draw, proposal: Draw | None,
                    alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        schedule, generator, samples = self.schedule, self.generator, self.config.old_policy_samples
        states, act_dim = next_draw.best.shape
        obs = batch.next_obs.repeat_interleave(samples, dim=0)
        with torch.no_grad():
            clean = self._explore(next_draw.best.unsqueeze(1).expand(states, samples, act_dim), alpha)
            q = self.critic(obs, clean.view(-1, act_dim)).min(0).values.view(states, samples)
            weights = rsm_weights(q, alpha, self.config.q_weight_scale)
            k = schedule.random_steps((states, samples), generator)
            noise = torch.randn(clean.shape, generator=generator, device=clean.device)
            noisy = schedule.add_noise(clean, k, noise)
        predicted = self.policy(obs, noisy.view(-1, act_dim), k.view(-1)).view(clean.shape)
        # Mean over states of the weighted sum over that state's samples (weights sum to one per state).
        loss = (weights * (predicted - noise).pow(2).mean(-1)).sum(-1).mean()
        return loss, effective_sample_fraction(weights)
