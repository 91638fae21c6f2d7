"""DACER and DACER2 (algorithms/dacer.py, dacer2.py, distributional.py, gmm_entropy.py): BPTT through the chain,
the GMM entropy estimate, the alpha step, the distributional critic, the Q-gradient-field target, exact resume.
Interface conformance (shapes, range, state_dict round trip of a fresh agent) is in test_agents.py."""

import io
import math

import numpy as np
import pytest
import torch

import algorithms
from algorithms import Batch, make_agent, testing
from algorithms.dacer2 import DACER2Config, qgrad_eps_target, temporal_weight
from algorithms.diffusion import DiffusionSchedule
from algorithms.distributional import (DistributionalTarget, ReturnDistribution, distributional_loss,
                                       running_std)
from algorithms.gmm_entropy import gaussian_entropy, gmm_entropy

OBS_DIM, ACT_DIM, BATCH = 4, 2, 32
SMALL = {"hidden": "32,32", "batch_size": BATCH, "entropy_states": 4, "entropy_samples": 50}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_agent(name: str, seed: int = 0, **overrides):
    return make_agent(name, OBS_DIM, ACT_DIM, {**SMALL, **overrides}, seed=seed)


def random_batch(seed: int = 0) -> Batch:
    return testing.random_batch(OBS_DIM, ACT_DIM, BATCH, seed, terminal_fraction=0.0)


# BPTT ---------------------------------------------------------------------------------------------------
def test_policy_gradient_reaches_the_first_denoising_step():
    """The actor loss is backpropagated through all T = 20 steps: the output of the network call at the first
    reverse step (k = T-1) receives gradient, and so do the time-embedding parameters, which only the step
    inputs reach. A chain sampled without a graph (or detached between steps) fails this."""
    agent = small_agent("dacer", diffusion_steps=20)
    step_outputs = []

    def keep(module, inputs, output):
        output.retain_grad()
        step_outputs.append(output)

    handle = agent.policy.trunk.register_forward_hook(keep)
    loss, _ = agent.policy_loss(random_batch(0).obs, torch.tensor(1.0))
    handle.remove()
    loss.backward()
    assert len(step_outputs) == 20
    first, last = step_outputs[0].grad, step_outputs[-1].grad
    assert first is not None and first.abs().sum() > 0
    assert last.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.policy.time_mlp.parameters())
    assert all(p.grad is None for p in agent.critic.parameters())  # the critic only passes the gradient on


def test_policy_update_raises_q_of_the_policy_action():
    """Repeated policy steps against a fixed critic raise min Q of the policy's actions (same chain noise)."""
    agent = small_agent("dacer", diffusion_steps=10, policy_lr=3e-3)
    obs, alpha = random_batch(0).obs, torch.tensor(0.1)
    randomness = agent.generator.get_state()

    def policy_q() -> float:
        agent.generator.set_state(randomness)
        with torch.no_grad():
            return float(agent.min_q(obs, agent.sample(obs, agent.generator, alpha)).mean())

    before = policy_q()
    for _ in range(30):
        agent.generator.set_state(randomness)
        agent._update_policy(obs, alpha)
    assert policy_q() > before + 1e-3


# Entropy regulator ---------------------------------------------------------------------------------------
def test_gmm_entropy_matches_a_known_gaussian():
    rng = np.random.default_rng(0)
    cov = np.array([[0.04, 0.01], [0.01, 0.09]])
    samples = rng.multivariate_normal([0.1, -0.2], cov, size=(8, 200))
    analytic = gaussian_entropy(cov)
    assert analytic == pytest.approx(0.5 * 2 * (1 + math.log(2 * math.pi)) + 0.5 * math.log(np.linalg.det(cov)))
    # One component: the fitted Gaussian's entropy (sampling error only).
    assert gmm_entropy(samples, components=1) == pytest.approx(analytic, abs=0.05)
    # Three components (DACER's setting): the label-entropy term makes it an upper bound, at most log 3 above.
    three = gmm_entropy(samples, components=3)
    assert analytic - 0.05 < three < analytic + math.log(3)


def test_gmm_entropy_is_higher_for_a_bimodal_mixture_than_for_one_mode():
    rng = np.random.default_rng(1)
    cov = np.diag([0.01, 0.01])
    mode = rng.multivariate_normal([0.5, 0.0], cov, size=(8, 200))
    both = np.concatenate([mode[:, :100], rng.multivariate_normal([-0.5, 0.0], cov, size=(8, 100))], axis=1)
    single, bimodal = gmm_entropy(mode), gmm_entropy(both)
    # The mixture's true entropy is about log 2 above one mode's (well-separated modes).
    assert bimodal > single + 0.3, (single, bimodal)
    assert bimodal == pytest.approx(gaussian_entropy(cov) + math.log(2), abs=0.5)


def test_gmm_entropy_rejects_too_few_samples():
    with pytest.raises(ValueError, match="samples >= components=3"):
        gmm_entropy(np.zeros((2, 2, 1)), components=3)


@pytest.mark.parametrize("entropy, direction", [(5.0, -1), (-10.0, +1)])
def test_alpha_step_moves_toward_the_target_entropy(entropy, direction):
    """Entropy above -0.9 |A| lowers alpha (less exploration noise), below raises it; one Adam step ~ lr."""
    agent = small_agent("dacer")
    start = float(agent.log_alpha.detach())
    agent._update_alpha(torch.tensor(entropy))
    assert float(agent.log_alpha.detach()) == pytest.approx(start + direction * agent.config.alpha_lr, rel=1e-3)


def test_entropy_regulator_runs_every_n_updates_and_lowers_alpha_for_a_noisy_policy():
    """With large exploration noise the estimated entropy is far above -0.9 |A|: alpha drops, and only at
    updates 0, N, 2N (the estimate is reported unchanged in between)."""
    agent = small_agent("dacer", alpha_update_every=3, noise_scale=0.5)
    alphas, entropies = [], []
    for step in range(7):
        metrics = agent.update(random_batch(step))
        alphas.append(float(metrics["alpha"]))  # alpha used in this update (before its own step)
        entropies.append(float(metrics["entropy"]))
    assert entropies[0] > agent.target_entropy
    assert alphas[0] == pytest.approx(3.0)
    assert alphas[1] < alphas[0] and alphas[1] == alphas[2] == alphas[3]
    assert alphas[4] < alphas[3] and alphas[4] == alphas[5] == alphas[6]
    assert entropies[0] == entropies[1] == entropies[2] and entropies[3] != entropies[2]


# Critic -------------------------------------------------------------------------------------------------
def test_distributional_loss_gradients():
    """mu moves towards y (an MSE step scaled by (omega^2 + eps) / (sigma^2 + eps)); sigma grows when the bounded
    squared error exceeds sigma^2 and shrinks when it is below."""
    mean = torch.tensor([[0.0, 0.0]], requires_grad=True)
    std = torch.tensor([[0.5, 0.5]], requires_grad=True)
    target = DistributionalTarget(mean=torch.tensor([1.0, 1.0]), sample=torch.tensor([2.0, 0.1]))
    omega = torch.tensor([1.0])
    distributional_loss(ReturnDistribution(mean, std), target, omega).backward()
    expected_mean_grad = -(1.0 + 0.1) * (1.0 - 0.0) / (0.25 + 0.1) / 2
    torch.testing.assert_close(mean.grad, torch.full((1, 2), expected_mean_grad))
    assert std.grad[0, 0] < 0 < std.grad[0, 1]  # error 2.0^2 > 0.25 -> grow sigma; 0.1^2 < 0.25 -> shrink


def test_running_std_starts_at_the_first_batch_mean_then_averages():
    omega = torch.full((2,), -1.0)
    omega = running_std(omega, torch.tensor([[1.0, 3.0], [2.0, 2.0]]), rate=0.1)
    torch.testing.assert_close(omega, torch.tensor([2.0, 2.0]))
    omega = running_std(omega, torch.tensor([[4.0, 4.0], [0.0, 0.0]]), rate=0.1)
    torch.testing.assert_close(omega, torch.tensor([2.2, 1.8]))


@pytest.mark.parametrize("critic", ["distributional", "double_q"])
def test_both_critics_fit_a_fixed_batch(critic):
    agent = small_agent("dacer", critic=critic, gamma=0.0, critic_lr=3e-3, hidden="64,64", diffusion_steps=3)
    batch = random_batch(0)  # gamma = 0: the target mean is the scaled reward itself

    def error() -> float:
        with torch.no_grad():
            q = agent.q_values(batch.obs, batch.actions)
        return float((q - agent.config.reward_scale * batch.rewards).pow(2).mean())

    before = error()
    for _ in range(150):
        agent._update_critic(batch, batch.next_obs[:, :ACT_DIM].tanh())
    assert error() < 0.2 * before


def test_bad_critic_name_lists_the_choices():
    with pytest.raises(algorithms.ConfigError, match=r"critic must be one of \['distributional', 'double_q'\], got 'twin'"):
        small_agent("dacer", critic="twin")


# DACER2 ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["score", "eps"])
@pytest.mark.parametrize("direction", ["ascent", "descent"])
def test_qgrad_target_has_the_configured_norm_and_direction_at_every_step(form, direction):
    config = DACER2Config(qgrad_target=form, qgrad_direction=direction, qgrad_slope=0.7, qgrad_offset=-1.0)
    schedule = DiffusionSchedule.build("vp", 5)
    grad = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([[0.01], [1], [30], [2], [5]])
    k = torch.arange(5)
    target = qgrad_eps_target(grad, k, schedule, config)
    weight = torch.exp(0.7 * (k + 1) / 5 - 1.0)
    scale = schedule.sqrt_one_minus_alpha_bar if form == "score" else torch.ones(5)
    torch.testing.assert_close(target.norm(dim=-1), weight * scale)
    cosine = torch.nn.functional.cosine_similarity(target, grad, dim=-1)
    # eps points against the Q gradient for ascent: x0_hat = (a_k - sqrt(1 - abar) eps) / sqrt(abar) moves up Q.
    torch.testing.assert_close(cosine, torch.full((5,), -1.0 if direction == "ascent" else 1.0))
    # The implied score -eps / sqrt(1 - abar_k) has norm w(k) in the "score" form.
    if form == "score":
        torch.testing.assert_close((target / schedule.sqrt_one_minus_alpha_bar.unsqueeze(-1)).norm(dim=-1), weight)


def test_qgrad_target_without_normalisation_scales_with_the_gradient():
    config = DACER2Config(qgrad_target="eps", qgrad_normalize=False)
    schedule = DiffusionSchedule.build("vp", 5)
    grad = torch.tensor([[3.0, 4.0]])
    target = qgrad_eps_target(grad, torch.tensor([4]), schedule, config)
    torch.testing.assert_close(target, -temporal_weight(torch.tensor([4]), 5, 0.4, -1.8).unsqueeze(-1) * grad)


def test_dacer2_defaults_and_auxiliary_loss_on_every_chain_step():
    config = algorithms.resolve_config("dacer2", "Hopper-v5")
    assert (config.diffusion_steps, config.qgrad_weight, config.qgrad_target, config.qgrad_direction) == (5, 0.01, "score", "ascent")
    agent = small_agent("dacer2")
    calls = []
    handle = agent.policy.register_forward_hook(lambda module, inputs, output: calls.append(inputs[2]))
    loss, extra = agent.policy_loss(random_batch(0).obs, torch.tensor(1.0))
    handle.remove()
    # One batched forward over the T * B visited actions, every step index present B times.
    assert len(calls) == 1 and torch.equal(calls[0].bincount(), torch.full((5,), BATCH))
    assert float(extra["loss/qgrad"]) > 0
    # eta = 0 gives DACER's loss exactly (same chain noise).
    state = agent.generator.get_state()
    agent.config.qgrad_weight = 0.0
    agent.generator.set_state(state)
    plain, _ = agent.policy_loss(random_batch(1).obs, torch.tensor(1.0))
    agent.generator.set_state(state)
    dacer_loss, _ = algorithms.dacer.DACER.policy_loss(agent, random_batch(1).obs, torch.tensor(1.0))
    torch.testing.assert_close(plain, dacer_loss)


# Budget-relative entropy regulator and the policy lr schedule ---------------------------------------------------
@pytest.mark.parametrize("name", ["dacer", "dacer2"])
def test_alpha_interval_is_the_planned_updates_over_alpha_steps(name):
    """150 alpha steps by default: the DACER protocol's 1.5M updates keep the released 10,000-update interval,
    the SDAC protocol's ~194k updates get 1,293; without planned_updates or alpha_steps: the released 10,000."""
    def interval(**overrides) -> int:
        return small_agent(name, **overrides).alpha_interval

    assert interval(planned_updates=1_500_000) == 10_000
    assert interval(planned_updates=194_000) == 1_293
    assert interval() == 10_000  # planned_updates None: an agent in a user's own loop
    assert interval(planned_updates=194_000, alpha_steps=None) == 10_000
    assert interval(planned_updates=194_000, alpha_steps=None, alpha_update_every=7) == 7
    assert interval(planned_updates=100, alpha_steps=150, alpha_min_interval=1) == 1  # never 0
    # A short run: the budget-relative interval is floored at alpha_min_interval (1,000: GMM fits are costly).
    assert interval(planned_updates=9_000) == 1_000 and interval(planned_updates=9_000, alpha_min_interval=5) == 60
    # With the first estimate at update 0, a run of N updates has ceil(N / interval) alpha steps: exactly alpha_steps
    # when N is a multiple of it (1.5M: 150, as in the DACER paper), one more otherwise (194k: 151).
    assert len(range(0, 1_500_000, 10_000)) == 150 and len(range(0, 194_000, 1_293)) == 151


@pytest.mark.parametrize("planned, expected", [(12, 4), (13, 5)])
def test_alpha_steps_over_a_run_count_update_zero(planned, expected):
    """alpha_steps = 4: interval planned // 4 = 3, estimates at updates 0, 3, 6, 9 (and 12 when the run has a 13th
    update): alpha_steps of them when the run length is a multiple of alpha_steps, alpha_steps + 1 otherwise."""
    agent = small_agent("dacer", planned_updates=planned, alpha_steps=4, alpha_min_interval=1)
    steps = []

    def record_alpha_step(entropy: torch.Tensor) -> torch.Tensor:
        steps.append(agent.num_updates)
        return torch.zeros(())

    agent._update_alpha = record_alpha_step
    for step in range(planned):
        agent.update(random_batch(step))
    assert steps == list(range(0, planned, 3)) and len(steps) == expected


def test_dacer_policy_lr_is_constant_by_default_and_follows_the_shared_schedule_when_set():
    agent = small_agent("dacer")
    for step in range(5):
        agent.update(random_batch(step))
    assert agent.policy_optimizer.param_groups[0]["lr"] == 1e-4  # the DACER repo: constant
    # The SDAC repo's copy: 3e-4 -> 3e-5 over policy updates (here 0 -> 2); policy update i is update 2 i.
    agent = small_agent("dacer", policy_lr=3e-4, policy_lr_end=3e-5, policy_lr_decay_begin=0, policy_lr_decay_end=2)
    lrs = []
    for step in range(5):
        agent.update(random_batch(step))
        lrs.append(agent.policy_optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([3e-4, 3e-4, 1.65e-4, 1.65e-4, 3e-5])


def test_policy_lr_window_is_checked():
    with pytest.raises(algorithms.config.ConfigError, match="policy_lr_decay_begin <= policy_lr_decay_end"):
        small_agent("dacer", policy_lr_decay_begin=10, policy_lr_decay_end=5)


# Defaults and resume ---------------------------------------------------------------------------------------
def test_defaults_are_the_released_code_values_with_per_env_blocks():
    hopper, humanoid, cheetah = (algorithms.resolve_config("dacer", env) for env in ("Hopper-v5", "Humanoid-v5", "HalfCheetah-v4"))
    assert (hopper.diffusion_steps, hopper.beta_schedule, hopper.init_noise_scale, hopper.critic) == (20, "vp", 1.0, "distributional")
    assert (hopper.policy_lr, hopper.critic_lr, hopper.alpha_lr, hopper.alpha_update_every) == (1e-4, 1e-4, 0.03, 10_000)
    assert (hopper.policy_lr_end, hopper.alpha_steps, hopper.planned_updates) == (None, 150, None)
    assert (hopper.init_alpha, hopper.target_entropy_scale, hopper.entropy_samples, hopper.gmm_components) == (3.0, 0.9, 200, 3)
    assert (hopper.noise_scale, hopper.hidden, hopper.reward_scale, hopper.policy_delay) == (0.1, (256, 256, 256), 0.2, 2)
    assert (humanoid.noise_scale, humanoid.hidden, cheetah.noise_scale) == (0.15, (512, 512, 512), 0.15)
    assert algorithms.resolve_config("dacer2", "Humanoid-v5").hidden == (512, 512, 512)


@pytest.mark.parametrize("name", ["dacer", "dacer2"])
def test_resume_across_an_entropy_estimate_is_exact(name):
    """Save after 2 updates, restore into an agent with another seed, continue past the next entropy estimate
    (update 3): every metric, the running std and alpha match."""
    agent = small_agent(name, alpha_update_every=3)
    for step in range(2):
        agent.update(random_batch(step))
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    clone = small_agent(name, seed=123, alpha_update_every=3)
    clone.load_state_dict(torch.load(buffer, weights_only=False))
    for step in range(2, 5):
        original, restored = agent.update(random_batch(step)), clone.update(random_batch(step))
        for key in original:
            assert torch.equal(original[key], restored[key]), (step, key)
    assert torch.equal(agent.omega, clone.omega) and torch.equal(agent.log_alpha, clone.log_alpha)
