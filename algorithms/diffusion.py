"""Diffusion-policy building blocks shared by every diffusion algorithm (SDAC, DPMD, DACER, ...).

Conventions are those of the "relax" code base that SDAC, DPMD and DACER were released in (docs/algorithms.md,
"Shared machinery", diffusion conventions):

- a discrete DDPM with integer step index k = 0..T-1 and a beta schedule chosen by name (:func:`beta_schedule`);
- forward noising a_k = sqrt(abar_k) a_0 + sqrt(1 - abar_k) eps (:meth:`DiffusionSchedule.add_noise`);
- the ancestral reverse sampler with x0-hat clipped to [-1, 1] before the posterior mean, so the output at
  k = 0 *is* the clipped x0-hat and every action lies in [-1, 1] (:func:`reverse_sample`);
- the noise predictor eps_theta(s, a_k, k): an MLP on concat(obs, noisy action, time embedding), where the
  time embedding is a fixed 16-dim sinusoid of k followed by Linear(32) -> act -> Linear(16) (:class:`NoisePredictor`);
- best-of-N selection of sampled actions by the minimum over the critic ensemble (:func:`best_of_n`).

EMA copies of a policy are ``nets.frozen_copy`` + ``nets.polyak_update``; nothing diffusion-specific is needed.

All randomness is drawn from an explicit ``torch.Generator`` so agents stay reproducible and restorable.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.nets import activation, activation_buffers, layers_into_buffers, mlp

BETA_SCHEDULES = ("linear", "vp", "cosine")


# Beta schedules -----------------------------------------------------------------------------------
def _linear_betas(steps: int) -> torch.Tensor:
    # relax GaussianDiffusion: betas span [1e-4, 0.999] whatever T is; the scale factor does the rest
    # (SDAC code, relax/network/diffv2.py).
    return torch.linspace(1e-4, 0.999, steps, dtype=torch.float64)


def _vp_betas(steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> torch.Tensor:
    # Discretised VP-SDE of the DACER code (docs/algorithms.md, "Shared machinery"):
    # beta_k = 1 - exp(-b_min/T - (b_max - b_min)(2k + 1) / (2 T^2)).
    k = torch.arange(steps, dtype=torch.float64)
    return 1.0 - torch.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * k + 1) / steps**2)


def _cosine_betas(steps: int, offset: float = 0.008) -> torch.Tensor:
    # Nichol & Dhariwal 2021: abar(t) = cos^2(((t/T + s) / (1 + s)) pi/2), beta_t = 1 - abar(t+1)/abar(t).
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    alpha_bar = torch.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


def beta_schedule(name: str, steps: int, scale: float = 1.0) -> torch.Tensor:
    """``scale * betas`` of schedule ``name`` (float64, shape ``[steps]``), each beta capped below 1.

    The SDAC/DPMD code uses ``linear`` with scale 0.8, the DACER code ``vp`` with scale 1
    (docs/algorithms.md, "Shared machinery").
    """
    makers = {"linear": _linear_betas, "vp": _vp_betas, "cosine": _cosine_betas}
    if name not in makers:
        raise ValueError(f"unknown beta schedule {name!r}; valid choices: {', '.join(BETA_SCHEDULES)}")
    if steps < 1 or scale <= 0:
        raise ValueError(f"need steps >= 1 and scale > 0, got steps={steps}, scale={scale}")
    return (scale * makers[name](steps)).clamp(max=0.999)


class StepCoefficients(NamedTuple):
    """Host-side scalars of one reverse step (Python floats: no device indexing inside the sampler loop)."""

    recip_sqrt_alpha_bar: float
    sqrt_recip_alpha_bar_minus_one: float
    c1: float
    c2: float
    posterior_std: float


class DiffusionSchedule(nn.Module):
    """Precomputed per-step tensors of a discrete DDPM, as non-persistent buffers (they follow from the
    config, so they are rebuilt rather than saved). Index them with a LongTensor of step indices."""

    def __init__(self, betas: torch.Tensor) -> None:
        super().__init__()
        betas = betas.to(torch.float64)
        alphas = 1.0 - betas
        alpha_bar = torch.cumprod(alphas, 0)
        alpha_bar_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])  # abar_{-1} = 1
        tensors = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": alpha_bar_prev,
            "sqrt_alpha_bar": alpha_bar.sqrt(),
            "sqrt_one_minus_alpha_bar": (1.0 - alpha_bar).sqrt(),
            "recip_sqrt_alpha_bar": alpha_bar.rsqrt(),
            "sqrt_recip_alpha_bar_minus_one": (1.0 / alpha_bar - 1.0).sqrt(),
            # DDPM posterior q(a_{k-1} | a_k, a_0) = N(c1 a_0 + c2 a_k, posterior_variance) (Ho et al. 2020, eq. 7).
            "c1": betas * alpha_bar_prev.sqrt() / (1.0 - alpha_bar),
            "c2": (1.0 - alpha_bar_prev) * alphas.sqrt() / (1.0 - alpha_bar),
            "posterior_variance": betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar),
        }
        for name, value in tensors.items():
            self.register_buffer(name, value.to(torch.float32), persistent=False)
        self._host = [
            StepCoefficients(*(float(tensors[key][k]) for key in (
                "recip_sqrt_alpha_bar", "sqrt_recip_alpha_bar_minus_one", "c1", "c2")),
                math.sqrt(float(tensors["posterior_variance"][k])))
            for k in range(len(betas))
        ]

    @classmethod
    def build(cls, name: str, steps: int, scale: float = 1.0) -> DiffusionSchedule:
        return cls(beta_schedule(name, steps, scale))

    @property
    def steps(self) -> int:
        return len(self._host)

    def coefficients(self, k: int) -> StepCoefficients:
        return self._host[k]

    def add_noise(self, a0: torch.Tensor, k: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample of q(a_k | a_0) given the standard-normal ``noise``; ``k`` has a0's shape minus the last dim."""
        return self.sqrt_alpha_bar[k].unsqueeze(-1) * a0 + self.sqrt_one_minus_alpha_bar[k].unsqueeze(-1) * noise

    def predict_x0(self, a_k: torch.Tensor, k: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The a_0 that ``noise`` maps to a_k: the inverse of :meth:`add_noise` (unclipped)."""
        return (self.recip_sqrt_alpha_bar[k].unsqueeze(-1) * a_k
                - self.sqrt_recip_alpha_bar_minus_one[k].unsqueeze(-1) * noise)

    def random_steps(self, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        """Step indices drawn uniformly from {0, ..., T-1}."""
        return torch.randint(self.steps, tuple(shape), generator=generator, device=self.betas.device)


# Networks -----------------------------------------------------------------------------------------
def sinusoidal_embedding(steps: torch.Tensor, dim: int = 16) -> torch.Tensor:
    """``[len(steps), dim]``: dim/2 sines then dim/2 cosines of k * 10000^(-j/(dim/2)), times 1/sqrt(dim)
    (relax code, ``scaled_sinusoidal_encoding``: 1/4 at dim 16)."""
    half = dim // 2
    freqs = 10000.0 ** (-torch.arange(half, dtype=torch.float32, device=steps.device) / half)
    angles = steps.to(torch.float32).unsqueeze(-1) * freqs
    return dim ** -0.5 * torch.cat([angles.sin(), angles.cos()], dim=-1)


class NoisePredictor(nn.Module):
    """eps_theta(s, a_k, k): MLP on concat(obs, noisy action, step embedding) -> predicted noise (relax code).

    Besides the plain ``forward`` (training) it offers ``denoiser`` for the reverse chain, which splits the
    first layer by input: the obs part is the same at all T steps and for all particles of a state, and the
    step part is the same for every row, so each step costs one ``[rows, act_dim]`` matmul in the first layer
    instead of one over obs_dim + act_dim + 16 inputs (a large saving for Humanoid's 348).
    """

    def __init__(self, obs_dim: int, act_dim: int, steps: int, hidden: Sequence[int] = (256, 256, 256),
                 act: str = "mish", time_dim: int = 16, time_hidden: int | None = 32) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.steps = obs_dim, act_dim, steps
        self.compiled_chain_mode: str | None = None  # set by algorithms.compiled.compile_module
        self.register_buffer("step_sinusoids", sinusoidal_embedding(torch.arange(steps), time_dim), persistent=False)
        # time_hidden None or 0: the sinusoid enters the first layer as it is (relax's DIPO policy net).
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_hidden), activation(act)(),
                                      nn.Linear(time_hidden, time_dim)) if time_hidden else nn.Identity()
        self.input_layer = nn.Linear(obs_dim + act_dim + time_dim, hidden[0])
        self.trunk = nn.Sequential(activation(act)(), *mlp(hidden[0], hidden[1:], act_dim, act))

    def step_embeddings(self) -> torch.Tensor:
        """``[T, time_dim]``: the learned embedding of every step index (T rows: cheaper than per sample)."""
        return self.time_mlp(self.step_sinusoids)

    def forward(self, obs: torch.Tensor, noisy_action: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        step_embedding = self.step_embeddings()[k]
        return self.trunk(self.input_layer(torch.cat([obs, noisy_action, step_embedding], dim=-1)))

    # Reverse-chain fast path: the same function as forward, with the first layer split by input.
    def denoiser(self, obs: torch.Tensor, particles: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """eps(a_k, k) for the ``len(obs) * particles`` rows of a reverse chain (each state repeated
        ``particles`` times). The obs and step parts of the first layer are computed here, once per chain."""
        obs_features = self._obs_features(obs).repeat_interleave(particles, dim=0)
        step_features = self._step_features()
        if torch.is_grad_enabled() or torch.compiler.is_compiling():  # compiled: inductor plans the buffers itself
            return lambda action, k: self._predict(obs_features, action, step_features[k])
        buffers = activation_buffers(obs_features, [self.input_layer, *self.trunk])
        return lambda action, k: self._predict_into(obs_features, action, step_features[k], buffers)

    def _obs_features(self, obs: torch.Tensor) -> torch.Tensor:
        """Obs part of the first layer's pre-activation, bias included: ``[rows, hidden[0]]``."""
        return F.linear(obs, self.input_layer.weight[:, :self.obs_dim], self.input_layer.bias)

    def _step_features(self) -> torch.Tensor:
        """Step part of the first layer's pre-activation for every k: ``[T, hidden[0]]``."""
        return F.linear(self.step_embeddings(), self.input_layer.weight[:, self.obs_dim + self.act_dim:])

    def _action_weight(self) -> torch.Tensor:
        return self.input_layer.weight[:, self.obs_dim:self.obs_dim + self.act_dim]

    def _predict(self, obs_features: torch.Tensor, noisy_action: torch.Tensor,
                 step_feature: torch.Tensor) -> torch.Tensor:
        pre_activation = torch.addmm(obs_features, noisy_action, self._action_weight().t()).add_(step_feature)
        return self.trunk(pre_activation)

    def _predict_into(self, obs_features: torch.Tensor, noisy_action: torch.Tensor, step_feature: torch.Tensor,
                      buffers: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``_predict`` without autograd, every layer writing into one of two reused buffers (see
        ``nets.layers_into_buffers``). The result lives in a buffer: use it before the next call."""
        rows, width = obs_features.shape
        x = torch.addmm(obs_features, noisy_action, self._action_weight().t(),
                        out=buffers[0][:rows * width].view(rows, width)).add_(step_feature)
        return layers_into_buffers(self.trunk, x, (buffers[1], buffers[0]))


# Sampling ---------------------------------------------------------------------------------------
def reverse_sample(model: NoisePredictor, schedule: DiffusionSchedule, obs: torch.Tensor, particles: int,
                   generator: torch.Generator, init_scale: float = 1.0,
                   visited: list[torch.Tensor] | None = None, posterior_noise: float = 1.0) -> torch.Tensor:
    """``[B, particles, act_dim]`` actions from the DDPM ancestral sampler with x0-hat clipping (relax code).

    a_T = init_scale * N(0, I); for k = T-1..0: x0 = clip(a_k / sqrt(abar_k) - sqrt(1/abar_k - 1) eps_hat),
    a_{k-1} = c1_k x0 + c2_k a_k + sqrt(posterior_variance_k) z (no noise at k = 0, where c1 = 1, c2 = 0).
    All particles of all states run as one ``[B * particles, ...]`` batch; the only loop is over steps.
    Differentiable (for BPTT algorithms such as DACER) unless called under ``torch.no_grad``.
    ``visited``, if given, receives the input a_k of every step, k = T-1 first, as ``[B * particles, act_dim]``
    (per-step losses such as DACER2's need the chain's own intermediate actions). ``posterior_noise`` multiplies
    the posterior std (the original DIPO code's ``noise_ratio``: 0 there when evaluating); the noise is drawn
    either way, so the generator advances the same.
    """
    rows = obs.shape[0] * particles
    noise_shape = (schedule.steps, rows, model.act_dim)
    noise = torch.randn(noise_shape, generator=generator, device=obs.device, dtype=obs.dtype)
    action = init_scale * torch.randn(noise_shape[1:], generator=generator, device=obs.device, dtype=obs.dtype)
    chain, mode = run_chain, getattr(model, "compiled_chain_mode", None)  # any model with a denoiser may come here
    if mode is not None:  # the random numbers above stay eager: the same bits either way
        from algorithms.compiled import compiled
        chain = compiled(run_chain, "the reverse diffusion chain", mode)
    steps = [schedule.coefficients(k) for k in reversed(range(schedule.steps))]
    action = chain(model, steps, obs, particles, action, noise, posterior_noise, visited)
    if mode == "reduce-overhead":  # a CUDA graph's output is overwritten by its next replay
        action = action.clone()
        if visited is not None:
            visited[:] = [a.clone() for a in visited]
    return action.view(obs.shape[0], particles, model.act_dim)


def run_chain(model: NoisePredictor, steps: list[StepCoefficients], obs: torch.Tensor, particles: int,
              action: torch.Tensor, noise: torch.Tensor, posterior_noise: float,
              visited: list[torch.Tensor] | None) -> torch.Tensor:
    """The reverse chain of :func:`reverse_sample` from a_T = ``action`` with the posterior ``noise`` already drawn
    (``steps``: the coefficients of k = T-1 first): a pure function of its inputs, so it compiles into one graph."""
    eps_model = model.denoiser(obs, particles)
    for k, coef in zip(reversed(range(len(steps))), steps):
        if visited is not None:
            visited.append(action)
        eps = eps_model(action, k)
        x0 = (coef.recip_sqrt_alpha_bar * action - coef.sqrt_recip_alpha_bar_minus_one * eps).clamp(-1.0, 1.0)
        mean = coef.c1 * x0 + coef.c2 * action
        action = mean + (posterior_noise * coef.posterior_std) * noise[k] if k > 0 else mean
    return action


class Candidates(NamedTuple):
    """Best-of-N result: the chosen action per state and everything it was chosen from."""

    best: torch.Tensor        # [B, act_dim]
    particles: torch.Tensor   # [B, N, act_dim]
    q: torch.Tensor           # [B, N], min over the critic ensemble


def best_of_n(particles: torch.Tensor, obs: torch.Tensor, critic: nn.Module) -> Candidates:
    """For each state keep the particle with the highest min-over-critics Q (SDAC code,
    relax/network/diffv2.py), in one critic pass."""
    batch, n, act_dim = particles.shape
    q = critic(obs.repeat_interleave(n, dim=0), particles.reshape(batch * n, act_dim)).min(0).values.view(batch, n)
    best = torch.take_along_dim(particles, q.argmax(1).view(batch, 1, 1), dim=1).squeeze(1)
    return Candidates(best, particles, q)


def sample_best_of_n(model: NoisePredictor, schedule: DiffusionSchedule, critic: nn.Module, obs: torch.Tensor,
                     particles: int, generator: torch.Generator, init_scale: float = 1.0) -> Candidates:
    """Reverse-sample ``particles`` actions per state and select by min-Q: the acting rule of SDAC/DPMD."""
    return best_of_n(reverse_sample(model, schedule, obs, particles, generator, init_scale), obs, critic)


class DiffusionActorCritic(NamedTuple):
    """The networks of a diffusion actor-critic of the relax code base (SDAC, DPMD, QVPO): the noise predictor and
    its EMA copy (which acts), twin critics and their targets, the noise schedule, and Adam for both."""

    policy: NoisePredictor
    policy_ema: NoisePredictor
    critic: nn.Module
    critic_target: nn.Module
    schedule: DiffusionSchedule
    policy_optimizer: torch.optim.Optimizer
    critic_optimizer: torch.optim.Optimizer


def diffusion_actor_critic(agent, c) -> DiffusionActorCritic:
    """Built from a config with ``hidden``, ``activation``, ``n_critics``, ``diffusion_steps``, ``beta_schedule``,
    ``beta_schedule_scale``, ``policy_lr`` and ``critic_lr``, initialised under the agent's seed."""
    from algorithms.nets import CriticEnsemble, adam, frozen_copy

    with agent.seeded_init():
        policy = NoisePredictor(agent.obs_dim, agent.act_dim, c.diffusion_steps, c.hidden, c.activation).to(agent.device)
        critic = CriticEnsemble(agent.obs_dim, agent.act_dim, c.hidden, c.n_critics, c.activation).to(agent.device)
    schedule = DiffusionSchedule.build(c.beta_schedule, c.diffusion_steps, c.beta_schedule_scale).to(agent.device)
    return DiffusionActorCritic(policy, frozen_copy(policy), critic, frozen_copy(critic), schedule,
                                adam(policy.parameters(), c.policy_lr, agent.device),
                                adam(critic.parameters(), c.critic_lr, agent.device))
