"""The shared diffusion math (algorithms/diffusion.py): schedules, noising, the reverse sampler, networks, best-of-N."""

import math

import pytest
import torch
import torch.nn.functional as F

from algorithms.diffusion import (
    DiffusionSchedule,
    NoisePredictor,
    beta_schedule,
    best_of_n,
    reverse_sample,
    sinusoidal_embedding,
)
from algorithms.nets import CriticEnsemble, Mish


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def released_schedule(steps: int = 20) -> DiffusionSchedule:
    return DiffusionSchedule.build("linear", steps, 0.8)


# Schedules ------------------------------------------------------------------------------------------
def test_linear_schedule_is_the_released_one():
    expected = 0.8 * torch.linspace(1e-4, 0.999, 20, dtype=torch.float64)
    torch.testing.assert_close(beta_schedule("linear", 20, 0.8), expected)
    assert released_schedule().alpha_bar[-1] < 1e-4  # the chain ends in (almost) pure noise


def test_vp_schedule_matches_the_dacer_range():
    betas = beta_schedule("vp", 20)
    assert betas[0] == pytest.approx(0.017, abs=1e-3) and betas[-1] == pytest.approx(0.386, abs=1e-3)
    assert float(torch.cumprod(1 - betas, 0)[-1]) == pytest.approx(6.4e-3, rel=0.02)


def test_cosine_schedule_is_increasing_and_capped():
    betas = beta_schedule("cosine", 50)
    assert torch.all(betas[1:] >= betas[:-1]) and 0 < betas[0] and betas.max() <= 0.999


def test_unknown_schedule_lists_the_valid_ones():
    with pytest.raises(ValueError, match="linear, vp, cosine"):
        beta_schedule("quadratic", 10)


# Forward noising and posterior ------------------------------------------------------------------------
def test_forward_noising_has_the_right_mean_and_variance():
    schedule = released_schedule()
    n, a0 = 200_000, torch.tensor([0.7, -0.4, 0.1])
    generator = torch.Generator().manual_seed(0)
    for k in (0, 5, 12, 19):
        steps = torch.full((n,), k)
        noisy = schedule.add_noise(a0.expand(n, 3), steps, torch.randn(n, 3, generator=generator))
        alpha_bar = float(schedule.alpha_bar[k])
        std = math.sqrt(1 - alpha_bar)
        # 6 standard errors: mean error ~ std/sqrt(n), variance error ~ var*sqrt(2/n).
        torch.testing.assert_close(noisy.mean(0), math.sqrt(alpha_bar) * a0, rtol=0, atol=6 * std / math.sqrt(n))
        torch.testing.assert_close(noisy.var(0), torch.full((3,), 1 - alpha_bar), rtol=6 * math.sqrt(2 / n), atol=0)


def test_predict_x0_inverts_forward_noising():
    schedule = released_schedule()
    generator = torch.Generator().manual_seed(1)
    a0, noise = torch.rand(64, 3, generator=generator) * 2 - 1, torch.randn(64, 3, generator=generator)
    steps = schedule.random_steps((64,), generator)
    recovered = schedule.predict_x0(schedule.add_noise(a0, steps, noise), steps, noise)
    torch.testing.assert_close(recovered, a0, rtol=0, atol=1e-3)  # float32 through 1/sqrt(abar) ~ 440


def test_posterior_coefficients_match_gaussian_conditioning():
    """q(a_{k-1} | a_k, a_0) from Bayes' rule on q(a_{k-1} | a_0) and q(a_k | a_{k-1}), in float64."""
    schedule = released_schedule()
    betas = beta_schedule("linear", 20, 0.8)
    alpha_bar = torch.cumprod(1 - betas, 0)
    for k in range(1, 20):
        prior_var = 1 - alpha_bar[k - 1]              # a_{k-1} | a_0 ~ N(sqrt(abar_{k-1}) a_0, prior_var)
        precision = 1 / prior_var + (1 - betas[k]) / betas[k]  # a_k | a_{k-1} ~ N(sqrt(alpha_k) a_{k-1}, beta_k)
        variance = 1 / precision
        c1 = variance * alpha_bar[k - 1].sqrt() / prior_var
        c2 = variance * (1 - betas[k]).sqrt() / betas[k]
        for name, value in (("c1", c1), ("c2", c2), ("posterior_variance", variance)):
            assert float(getattr(schedule, name)[k]) == pytest.approx(float(value), rel=1e-5), (name, k)
    # k = 0: abar_{-1} = 1, the posterior is the point a_0 (the sampler returns the clipped x0-hat).
    assert float(schedule.c1[0]) == pytest.approx(1.0) and float(schedule.c2[0]) == 0.0
    assert float(schedule.posterior_variance[0]) == 0.0


# Reverse sampler --------------------------------------------------------------------------------------
class GaussianOracle:
    """The exact noise predictor for data a_0 ~ N(mu, sigma^2 I): eps = sqrt(1 - abar)(a - sqrt(abar) mu) / v,
    v = abar sigma^2 + 1 - abar, the variance of the noised marginal."""

    def __init__(self, schedule: DiffusionSchedule, mu: float, sigma: float, act_dim: int = 2) -> None:
        self.alpha_bar, self.mu, self.sigma, self.act_dim = schedule.alpha_bar.double(), mu, sigma, act_dim

    def denoiser(self, obs, particles):
        def eps(action, k):
            ab = float(self.alpha_bar[k])
            return math.sqrt(1 - ab) * (action - math.sqrt(ab) * self.mu) / (ab * self.sigma**2 + 1 - ab)
        return eps


def exact_sampler_moments(betas: torch.Tensor, mu: float, sigma: float, init_scale: float) -> tuple[float, float]:
    """Mean and std of the sampler's output for Gaussian data with the exact eps, by propagating moments:
    every step is affine in a_k (x0-hat = A a_k + b never clips when mu +- 7 sigma is inside [-1, 1])."""
    alpha_bar = torch.cumprod(1 - betas, 0)
    mean, var = 0.0, init_scale**2
    for k in reversed(range(len(betas))):
        ab, ab_prev = float(alpha_bar[k]), float(alpha_bar[k - 1]) if k else 1.0
        v = ab * sigma**2 + 1 - ab
        slope, offset = math.sqrt(ab) * sigma**2 / v, (1 - ab) * mu / v   # x0-hat = slope a_k + offset
        beta = float(betas[k])
        c1, c2 = beta * math.sqrt(ab_prev) / (1 - ab), (1 - ab_prev) * math.sqrt(1 - beta) / (1 - ab)
        mean, var = (c1 * slope + c2) * mean + c1 * offset, (c1 * slope + c2) ** 2 * var + beta * (1 - ab_prev) / (1 - ab)
    return mean, math.sqrt(var)


def sample_oracle(schedule: DiffusionSchedule, mu: float, sigma: float, init_scale: float, n: int) -> torch.Tensor:
    with torch.no_grad():
        return reverse_sample(GaussianOracle(schedule, mu, sigma), schedule, torch.zeros(1, 1), n,
                              torch.Generator().manual_seed(0), init_scale).reshape(-1, 2).double()


def test_sampler_with_perfect_predictor_recovers_a_gaussian_target():
    """With many small steps the ancestral sampler's output approaches the data distribution N(0.3, 0.1^2).
    (Its plug-in x0-hat with posterior variance leaves a small variance deficit, ~3 % at T = 1000.)"""
    mu, sigma, n = 0.3, 0.1, 20_000
    samples = sample_oracle(DiffusionSchedule.build("cosine", 1000), mu, sigma, 1.0, n)
    torch.testing.assert_close(samples.mean(0), torch.full((2,), mu, dtype=torch.float64), rtol=0, atol=6 * sigma / math.sqrt(n))
    torch.testing.assert_close(samples.std(0), torch.full((2,), sigma, dtype=torch.float64), rtol=0.05, atol=0)


def test_sampler_matches_its_exact_output_distribution_at_the_released_settings():
    """T = 20, linear x 0.8, a_T ~ 0.5 N(0, I): here the deficit is large (std ~0.042 for sigma = 0.1), so
    compare with the moments this sampler must produce, computed independently."""
    mu, sigma, n, init = 0.3, 0.1, 40_000, 0.5
    expected_mean, expected_std = exact_sampler_moments(beta_schedule("linear", 20, 0.8), mu, sigma, init)
    samples = sample_oracle(released_schedule(), mu, sigma, init, n)
    torch.testing.assert_close(samples.mean(0), torch.full((2,), expected_mean, dtype=torch.float64),
                               rtol=0, atol=6 * expected_std / math.sqrt(n))
    torch.testing.assert_close(samples.std(0), torch.full((2,), expected_std, dtype=torch.float64),
                               rtol=6 * math.sqrt(0.5 / n), atol=0)


def test_sampler_outputs_lie_in_the_action_box():
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model = NoisePredictor(4, 3, 20, hidden=(32, 32))
        for param in model.parameters():  # a wild network: huge noise predictions
            param.mul_(50.0)
        actions = reverse_sample(model, released_schedule(), 10 * torch.randn(16, 4, generator=generator), 8, generator, 0.5)
    assert actions.shape == (16, 8, 3)
    assert actions.abs().max() <= 1.0 and actions.abs().max() > 0.99  # clipped, and the clip was needed


def test_sampler_is_differentiable_and_equal_with_and_without_autograd():
    model = NoisePredictor(4, 2, 5, hidden=(16, 16))
    schedule = DiffusionSchedule.build("vp", 5)
    obs = torch.randn(3, 4)
    with_grad = reverse_sample(model, schedule, obs, 4, torch.Generator().manual_seed(2))
    with_grad.sum().backward()  # the BPTT path (DACER) reaches the weights
    assert model.input_layer.weight.grad is not None and model.input_layer.weight.grad.abs().sum() > 0
    with torch.no_grad():
        fast = reverse_sample(model, schedule, obs, 4, torch.Generator().manual_seed(2))
    torch.testing.assert_close(fast, with_grad.detach(), rtol=0, atol=1e-5)


# Networks ---------------------------------------------------------------------------------------------
def test_time_embedding_is_the_released_sinusoid():
    embedding = sinusoidal_embedding(torch.arange(20))
    assert embedding.shape == (20, 16)
    torch.testing.assert_close(embedding[0], torch.tensor([0.0] * 8 + [0.25] * 8))
    k, j = 7, 3
    assert float(embedding[k, j]) == pytest.approx(0.25 * math.sin(k * 10000 ** (-j / 8)), abs=1e-6)
    assert float(embedding[k, 8 + j]) == pytest.approx(0.25 * math.cos(k * 10000 ** (-j / 8)), abs=1e-6)


def test_noise_predictor_shapes_and_chain_path_equal_forward():
    model = NoisePredictor(5, 3, 10, hidden=(32, 32, 32))
    obs, action = torch.randn(6, 5), torch.randn(6, 3)
    k = torch.full((6,), 4)
    assert model(obs, action, k).shape == (6, 3)
    assert model.input_layer.in_features == 5 + 3 + 16 and model.time_mlp[0].out_features == 32
    with torch.no_grad():
        expected = model(obs, action, k)
        torch.testing.assert_close(model.denoiser(obs, 1)(action, 4), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.denoiser(obs, 1)(action, 4), expected, rtol=1e-5, atol=1e-6)  # autograd path


def test_fast_mish_matches_the_native_op():
    x = torch.cat([torch.linspace(-100, 100, 20001), torch.randn(1000) * 3])
    with torch.no_grad():
        fast = Mish()(x)
    torch.testing.assert_close(fast, F.mish(x), rtol=0, atol=3e-6)
    # With autograd: the same fast forward, and the native op's gradient.
    leaf, native_leaf = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, native = Mish()(leaf), F.mish(native_leaf)
    torch.testing.assert_close(out, native, rtol=0, atol=3e-6)
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    out.backward(upstream)
    native.backward(upstream)
    assert torch.equal(leaf.grad, native_leaf.grad)


@pytest.mark.parametrize("act", ["mish", "relu"])
def test_critic_inference_path_equals_the_autograd_path(act):
    critic = CriticEnsemble(5, 3, (32, 16), n=2, act=act)
    obs, actions = torch.randn(40, 5), torch.randn(40, 3)
    with torch.no_grad():
        fast = critic(obs, actions)
    torch.testing.assert_close(fast, critic(obs, actions).detach(), rtol=1e-5, atol=1e-6)


# Best-of-N --------------------------------------------------------------------------------------------
class DistanceCritic(torch.nn.Module):
    """Two Q heads, -||a - goal_j(s)||^2, so min-Q has an obvious argmax to check against."""

    def forward(self, obs, actions):
        goals = torch.stack([obs[:, :2], obs[:, :2] + 0.1])
        return -(actions.unsqueeze(0) - goals).pow(2).sum(-1)


def test_best_of_n_returns_the_argmax_min_q_particle():
    generator = torch.Generator().manual_seed(0)
    obs, particles = torch.rand(7, 2, generator=generator), torch.rand(7, 9, 2, generator=generator) * 2 - 1
    chosen = best_of_n(particles, obs, DistanceCritic())
    for state in range(7):
        q = [float(DistanceCritic()(obs[state:state + 1], p.view(1, 2)).min()) for p in particles[state]]
        best = max(range(9), key=q.__getitem__)
        torch.testing.assert_close(chosen.best[state], particles[state, best])
        torch.testing.assert_close(chosen.q[state], torch.tensor(q))
