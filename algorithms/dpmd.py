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

By default this implements the intended math (docs/algorithms.md, DPMD, "Departures from the released code"), not
the released code's two bugs; each bug is a flag, for the ``sdac-paper-released`` preset:
1. ``double_critic_step``: the released critic Adam step is applied twice per update with the same gradient, the
   Adam state advancing twice (relax/algorithm/dpmd.py:123-126 and again :182-183). Off: one step, like SDAC.
2. ``released_weight_bug``: the released weights are exp(clip(q - mu_run / sigma_run, -3, 3) / alpha)
   (dpmd.py:132-134): the precedence bug makes the clipped value +3 for every sample once Q >> 3 (-3 once
   Q << -3), so every weight is the same constant and the loss is plain behaviour cloning of the one best-of-32 +
   noise action per state. Off: the weights are softmax(Q~ / lambda) over a group of ``old_policy_samples`` (G)
   samples of pi_old per state, as the RSM derivation asks (flowrl does the same), with Q~ = Q
   (``q_normalization: none``) or the intended Q~ = clip((Q - mu_run) / sigma_run, -3, 3) (``running_std``).
   mu_run, sigma_run: EMAs (rate 0.001) of the batch mean and std of min-Q at (s', a'), initialised to 0 and 1
   (dpmd.py:78-79, 131, 191-192), kept here the same way (``after_update``).

The group: G exploration-noise draws around the state's best-of-N action, i.e. G samples of pi_old given that
reverse-chain draw (one chain per state, not G: the chain is the cost of an update). So the weights are
normalised within each state conditionally on its particle draw. G is not in the released code (it has one
sample per state); with lambda -> inf the loss is the released behaviour cloning of best-of-N + noise, with
G samples per state instead of one. With ``released_weight_bug`` the weights are not normalised at all (as
released): the loss is the mean over states and their G samples of w * error, and G = 1 is the released code. The policy forward/backward and the weight critic pass run on B * G rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms import config as cfg
from algorithms.base import Batch, register
from algorithms.rsm import Draw, RSMAgent, RSMConfig, effective_sample_fraction, rsm_weights

Q_NORMALIZATIONS = ("none", "running_std")
# Released relax/algorithm/dpmd.py: the normalised Q is clipped to [-3, 3] (:133); the running mean and std start
# at 0 and 1 (:78-79) and follow the batch statistics at rate 0.001 per update (:191-192).
Q_NORM_CLIP = 3.0
Q_STATS_RATE = 0.001


@dataclass
class DPMDConfig(RSMConfig):
    q_weight_scale: float = cfg.field(1.0, "lambda = alpha / q_weight_scale in the weights exp(Q / lambda)",
                                      cfg.positive)  # lambda = alpha
    # Released code: 1, with unnormalised weights.
    old_policy_samples: int = cfg.field(16, "G, samples of the old policy per state for the self-normalised weights "
                                            "(with released_weight_bug: per state, unnormalised; the released code "
                                            "has 1)", cfg.at_least(1))
    # Default none: no measurable difference at a CPU budget (docs/algorithms.md, DPMD, "Choosing q_normalization").
    q_normalization: str = cfg.field("none", "Q in the weights: none (raw Q / lambda) or running_std (the released "
                                             "code's intended clip((Q - mean) / std, -3, 3) / lambda with running "
                                             "batch statistics)", cfg.one_of(Q_NORMALIZATIONS))
    # The two released bugs, off by default (docs/algorithms.md, DPMD, "Departures from the released code").
    released_weight_bug: bool = cfg.field(False, "reproduce the released weights exp(clip(Q - mean / std, -3, 3) / "
                                                 "lambda), unnormalised (needs q_normalization: running_std)")
    double_critic_step: bool = cfg.field(False, "reproduce the released double critic step: two Adam steps with the "
                                                "same gradient per update")

    def __post_init__(self) -> None:
        super().__post_init__()
        # The bug is a mis-parenthesised running_std normalisation: without the running statistics it has no meaning.
        cfg.check(not self.released_weight_bug or self.q_normalization == "running_std",
                  "released_weight_bug needs q_normalization: running_std (the bug is in that normalisation)")


def q_weights(q: torch.Tensor, alpha: torch.Tensor, config: DPMDConfig, mean: torch.Tensor,
              std: torch.Tensor) -> torch.Tensor:
    """Weights ``[B, G]`` of the G old-policy samples of each state from their min-Q ``q`` ``[B, G]``, with
    running batch statistics ``mean``, ``std``. Self-normalised per state unless ``released_weight_bug``."""
    c = config
    inverse_lambda = c.q_weight_scale / alpha
    if c.released_weight_bug:  # exp(clip(q - mean / std, -3, 3) / lambda): the precedence of the released code
        return torch.exp((q - mean / std).clamp(-Q_NORM_CLIP, Q_NORM_CLIP) * inverse_lambda)
    if c.q_normalization == "running_std":
        q = ((q - mean) / std).clamp(-Q_NORM_CLIP, Q_NORM_CLIP)
    return rsm_weights(q, alpha, c.q_weight_scale)


@register
class DPMD(RSMAgent):
    name = "dpmd"
    Config = DPMDConfig
    description = "Diffusion Policy Mirror Descent: Q-weighted score matching on old-policy samples (Ma et al. 2025)"
    state_attributes = (*RSMAgent.state_attributes, "q_running_mean", "q_running_std")

    def __init__(self, obs_dim: int, act_dim: int, config: DPMDConfig | None = None,
                 device: str | torch.device = "cpu", seed: int = 0) -> None:
        super().__init__(obs_dim, act_dim, config, device, seed)
        self.q_running_mean = torch.zeros((), device=self.device)
        self.q_running_std = torch.ones((), device=self.device)

    def policy_loss(self, batch: Batch, next_draw: Draw, proposal: Draw | None,
                    alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        schedule, generator, samples = self.schedule, self.generator, self.config.old_policy_samples
        states, act_dim = next_draw.best.shape
        obs = batch.next_obs.repeat_interleave(samples, dim=0)
        with torch.no_grad():
            clean = self._explore(next_draw.best.unsqueeze(1).expand(states, samples, act_dim), alpha)
            q = self.critic(obs, clean.view(-1, act_dim)).min(0).values.view(states, samples)
            weights = q_weights(q, alpha, self.config, self.q_running_mean, self.q_running_std)
            k = schedule.random_steps((states, samples), generator)
            noise = torch.randn(clean.shape, generator=generator, device=clean.device)
            noisy = schedule.add_noise(clean, k, noise)
        predicted = self.policy(obs, noisy.view(-1, act_dim), k.view(-1)).view(clean.shape)
        errors = (predicted - noise).pow(2).mean(-1)
        if self.config.released_weight_bug:  # unnormalised weights: the released mean over every weighted sample
            return (weights * errors).mean(), effective_sample_fraction(weights / weights.sum(-1, keepdim=True))
        # Mean over states of the weighted sum over that state's samples (weights sum to one per state).
        return (weights * errors).sum(-1).mean(), effective_sample_fraction(weights)

    def _update_critic(self, batch: Batch, next_actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, q_mean = super()._update_critic(batch, next_actions)
        if self.config.double_critic_step:  # the gradient is still in .grad: a second Adam step with it, as released
            self.critic_optimizer.step()
        return loss, q_mean

    @torch.no_grad()
    def after_update(self, batch: Batch, next_draw: Draw) -> None:
        """Running mean and std of min-Q at (s', a'), a' the target action of this update, after the critic step:
        the released code's statistics (dpmd.py:130-131, 191-192; its weights use the critic after its first Adam
        step). Skipped when nothing reads them."""
        if self.config.q_normalization == "none":
            return
        q = self.critic(batch.next_obs, next_draw.action).min(0).values
        self.q_running_mean.lerp_(q.mean(), Q_STATS_RATE)
        self.q_running_std.lerp_(q.std(correction=0), Q_STATS_RATE)  # jnp.std: the population std
