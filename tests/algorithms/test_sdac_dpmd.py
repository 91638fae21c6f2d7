"""SDAC and DPMD (algorithms/sdac.py, dpmd.py, rsm.py): weights, losses, alpha, schedules, acting, determinism.
Interface conformance (shapes, range, state_dict round trip) is in test_agents.py."""

import math

import numpy as np
import pytest
import torch

import algorithms
from algorithms import Batch, make_agent, testing
from algorithms.base import CONFIG_DIR
from algorithms.config import read_yaml
from algorithms.diffusion import DiffusionSchedule
from algorithms.dpmd import q_weights
from algorithms.rsm import effective_sample_fraction, noise_entropy, rsm_weights
from algorithms.schedules import linear_decay

OBS_DIM, ACT_DIM, BATCH = 4, 2, 16
SMALL = {"hidden": "32,32", "batch_size": BATCH, "diffusion_steps": 5, "particles": 4}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_agent(name: str, seed: int = 0, **overrides):
    extra = {"reverse_samples": 8} if name == "sdac" else {}
    return make_agent(name, OBS_DIM, ACT_DIM, {**SMALL, **extra, **overrides}, seed=seed)


def random_batch(seed: int = 0) -> Batch:
    return testing.random_batch(OBS_DIM, ACT_DIM, BATCH, seed, terminal_fraction=0.0)


# Weights ------------------------------------------------------------------------------------------
def test_rsm_weights_sum_to_one_per_state_and_favour_higher_q():
    q = torch.randn(5, 64, generator=torch.Generator().manual_seed(0)) * 3
    weights = rsm_weights(q, torch.tensor(2.0), q_weight_scale=5.0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5))
    assert torch.equal(weights.argsort(-1), q.argsort(-1))  # monotone in Q within each state
    # Temperature lambda = alpha / scale: a lower alpha concentrates the weight (fewer effective samples).
    sharper = rsm_weights(q, torch.tensor(0.5), q_weight_scale=5.0)
    assert effective_sample_fraction(sharper) < effective_sample_fraction(weights) < 1
    # Only differences within a state matter: adding a per-state value to Q changes nothing.
    torch.testing.assert_close(rsm_weights(q + torch.arange(5.0).unsqueeze(1) * 100, torch.tensor(2.0), 5.0), weights)


def test_effective_sample_fraction_bounds():
    assert float(effective_sample_fraction(torch.full((3, 8), 1 / 8))) == pytest.approx(1.0)
    assert float(effective_sample_fraction(torch.eye(8)[:3])) == pytest.approx(1 / 8)


# Policy loss decreases on a fixed problem ------------------------------------------------------------
@pytest.mark.parametrize("name", ["sdac", "dpmd"])
def test_policy_update_lowers_the_actor_loss_on_a_fixed_batch(name):
    """Repeat the policy step on one batch with the same draws and the same loss randomness (k, noise):
    a fixed weighted regression, which gradient steps must fit."""
    agent = small_agent(name, policy_lr=1e-3)
    batch = random_batch(0)
    alpha = agent.log_alpha.detach().exp()
    with torch.no_grad():
        next_draw, proposal = agent._draw(torch.cat([batch.next_obs, batch.obs]), alpha).split(BATCH)
    if name == "dpmd":
        proposal = None
    loss_randomness = agent.generator.get_state()

    def step() -> float:
        agent.generator.set_state(loss_randomness)
        return float(agent._update_policy(batch, next_draw, proposal, alpha)["loss/actor"])

    first = step()
    for _ in range(100):
        last = step()
    assert last < 0.6 * first, (first, last)


def test_reverse_sampling_target_points_toward_high_q():
    """SDAC's regression target for a noisy action is the weighted mean of K reverse noises. With a critic
    that prefers actions near a goal, the x0-hat implied by that target is much closer to the goal than the
    x0-hat implied by the unweighted mean (plain denoising)."""
    schedule = DiffusionSchedule.build("linear", 20, 0.8)
    generator = torch.Generator().manual_seed(1)
    goal, k = torch.tensor([0.5, -0.5]), torch.full((BATCH,), 3)
    noisy = schedule.add_noise(torch.zeros(BATCH, 2), k, torch.randn(BATCH, 2, generator=generator))
    reverse_noise = torch.randn(BATCH, 256, 2, generator=generator)
    x0 = schedule.predict_x0(noisy.unsqueeze(1), k.unsqueeze(1), reverse_noise).clamp(-1, 1)
    q = -20 * (x0 - goal).pow(2).sum(-1)
    weights = rsm_weights(q, torch.tensor(1.0), q_weight_scale=5.0)

    def implied_distance(eps: torch.Tensor) -> float:
        return float((schedule.predict_x0(noisy, k, eps).clamp(-1, 1) - goal).norm(dim=-1).mean())

    weighted = (weights.unsqueeze(-1) * reverse_noise).sum(1)
    assert implied_distance(weighted) < 0.5 * implied_distance(reverse_noise.mean(1))


# Critic, alpha, schedules ----------------------------------------------------------------------------
def test_dpmd_takes_one_critic_step_per_update():
    """The released DPMD applied the critic's Adam step twice per update; ours takes exactly one."""
    agent = small_agent("dpmd")
    for step in range(3):
        agent.update(random_batch(step))
    steps = {float(state["step"]) for state in agent.critic_optimizer.state.values()}
    assert steps == {3.0}
    assert agent.num_policy_updates == 1  # policy_delay = 2


def test_dpmd_double_critic_step_advances_adam_twice_with_the_same_gradient():
    """released dpmd.py:123-126 and :182-183: two Adam steps per update from one gradient."""
    agent = small_agent("dpmd", double_critic_step=True)
    for step in range(3):
        agent.update(random_batch(step))
    assert {float(state["step"]) for state in agent.critic_optimizer.state.values()} == {6.0}
    # The same gradient twice: one update from the same start moves the critic further than a single step does.
    agent, single = small_agent("dpmd", double_critic_step=True), small_agent("dpmd")
    start = [p.detach().clone() for p in single.critic.parameters()]
    agent.update(random_batch(0))
    single.update(random_batch(0))
    moved = [sum(float((p.detach() - p0).norm()) for p, p0 in zip(a.critic.parameters(), start)) for a in (agent, single)]
    assert moved[0] > 1.5 * moved[1]


# DPMD weights: the running-std normalisation and the released precedence bug --------------------------------
def dpmd_config(**overrides):
    return algorithms.dpmd.DPMDConfig(**overrides)


def test_running_std_weights_are_invariant_to_the_scale_of_q():
    """With converged running statistics (the batch mean and std of Q), the weights of Q and c Q are equal:
    the normalisation removes the critic's scale, which raw Q / lambda does not."""
    q = torch.randn(8, 16, generator=torch.Generator().manual_seed(0)) * 2 + 5
    config, alpha = dpmd_config(q_normalization="running_std"), torch.tensor(0.5)
    weights = q_weights(q, alpha, config, q.mean(), q.std(correction=0))
    for scale in (10.0, 1000.0):
        scaled = q * scale
        torch.testing.assert_close(q_weights(scaled, alpha, config, scaled.mean(), scaled.std(correction=0)), weights)
    raw = dpmd_config()
    assert effective_sample_fraction(q_weights(q * 10, alpha, raw, q.mean(), q.std())) < \
        effective_sample_fraction(q_weights(q, alpha, raw, q.mean(), q.std()))
    torch.testing.assert_close(weights.sum(-1), torch.ones(8))


def test_running_statistics_start_at_zero_and_one_and_move_at_rate_0_001():
    agent = small_agent("dpmd", q_normalization="running_std")
    assert (float(agent.q_running_mean), float(agent.q_running_std)) == (0.0, 1.0)
    batch = random_batch(0)
    agent.update(batch)
    # after_update's statistics: min-Q of the online critic at (s', a'); reproduce them from the same draw.
    agent2 = small_agent("dpmd", q_normalization="running_std")
    captured = {}
    original = agent2.after_update

    def capture(batch, next_draw):
        captured["q"] = agent2.critic(batch.next_obs, next_draw.action).min(0).values.detach()
        original(batch, next_draw)

    agent2.after_update = capture
    agent2.update(batch)
    q = captured["q"]
    assert float(agent2.q_running_mean) == pytest.approx(0.001 * float(q.mean()), rel=1e-4)
    assert float(agent2.q_running_std) == pytest.approx(0.999 + 0.001 * float(q.std(correction=0)), rel=1e-6)
    assert torch.equal(agent.q_running_mean, agent2.q_running_mean)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_released_weight_bug_makes_every_weight_equal_once_q_is_large(sign):
    """exp(clip(q - mean / std, -3, 3) / lambda): for |Q| >> 3 the clip gives +3 or -3 by the sign of Q, the same
    for every sample, whatever the statistics; the intended form keeps the differences."""
    q = sign * (100 + 5 * torch.randn(8, 4, generator=torch.Generator().manual_seed(1)))
    alpha, mean, std = torch.tensor(2.0), q.mean(), q.std()
    bug = q_weights(q, alpha, dpmd_config(q_normalization="running_std", released_weight_bug=True), mean, std)
    torch.testing.assert_close(bug, torch.full_like(q, math.exp(sign * 3 / 2.0)))
    intended = q_weights(q, alpha, dpmd_config(q_normalization="running_std"), mean, std)
    assert float(effective_sample_fraction(intended)) < 0.99


def test_released_weight_bug_needs_the_running_std_normalisation():
    with pytest.raises(algorithms.ConfigError, match="released_weight_bug needs q_normalization: running_std"):
        small_agent("dpmd", released_weight_bug=True)
    agent = small_agent("dpmd", q_normalization="running_std", released_weight_bug=True, old_policy_samples=1)
    for step in range(2):
        metrics = agent.update(random_batch(step))
    assert float(metrics["weights/ess"]) == 1.0  # G = 1, as released: one sample per state


def test_alpha_moves_toward_the_noise_entropy_target():
    agent = small_agent("sdac", alpha_update_every=2)
    start = float(agent.log_alpha.detach())
    for step in range(4):
        metrics = agent.update(random_batch(step))
    # Two Adam steps of ~alpha_lr each, downwards: the noise entropy at alpha = 5 is above -0.9 |A|.
    assert float(agent.log_alpha.detach()) == pytest.approx(start - 2 * 7e-3, rel=0.05)
    assert float(metrics["alpha"]) < 5.0


def test_noise_entropy_fixed_point_is_about_one_for_any_dimension():
    """docs/algorithms.md, SDAC, "α is not a temperature": 0.1 alpha* = sqrt(e^-1.8 / (2 pi e)), so alpha* ~ 0.98 whatever |A| is."""
    alpha_star = 10 * math.sqrt(math.exp(-1.8) / (2 * math.pi * math.e))
    assert alpha_star == pytest.approx(0.98, abs=0.01)
    for act_dim in (1, 3, 17):
        entropy = noise_entropy(torch.tensor(math.log(alpha_star)), 0.1, act_dim)
        assert float(entropy) == pytest.approx(-0.9 * act_dim, abs=1e-5)


def test_policy_learning_rate_schedule():
    assert linear_decay(0, 3e-4, 3e-5, 25_000, 75_000) == 3e-4
    assert linear_decay(50_000, 3e-4, 3e-5, 25_000, 75_000) == pytest.approx(1.65e-4)
    assert linear_decay(10**6, 3e-4, 3e-5, 25_000, 75_000) == 3e-5
    agent = small_agent("dpmd", policy_lr_decay_begin=0, policy_lr_decay_end=2)
    for step in range(6):
        agent.update(random_batch(step))
    assert agent.policy_optimizer.param_groups[0]["lr"] == pytest.approx(3e-5)


def test_defaults_are_the_released_code_values():
    sdac, dpmd = algorithms.resolve_config("sdac", "Hopper-v5"), algorithms.resolve_config("dpmd", "Hopper-v5")
    for config in (sdac, dpmd):
        assert (config.diffusion_steps, config.particles, config.beta_schedule_scale, config.init_noise_scale) == (20, 32, 0.8, 0.5)
        assert (config.hidden, config.activation, config.reward_scale, config.init_alpha) == ((256, 256, 256), "mish", 0.2, 5.0)
        assert (config.alpha_lr, config.alpha_update_every, config.policy_delay, config.noise_scale) == (7e-3, 250, 2, 0.1)
    assert (sdac.reverse_samples, sdac.q_weight_scale, dpmd.q_weight_scale) == (64, 5.0, 1.0)


# Acting -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sdac", "dpmd"])
def test_the_ema_policy_acts(name):
    agent = small_agent(name)
    obs = np.random.default_rng(0).normal(size=(3, OBS_DIM)).astype(np.float32)
    before = agent.act(obs, deterministic=True)
    with torch.no_grad():
        for param in agent.policy.parameters():  # wreck the online policy: acting must not notice
            param.normal_()
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), before)
    with torch.no_grad():
        for param in agent.policy_ema.parameters():
            param.normal_()
    assert not np.array_equal(agent.act(obs, deterministic=True), before)


def test_deterministic_acting_leaves_the_training_stream_alone():
    agent = small_agent("sdac")
    state = agent.generator.get_state()
    agent.act(np.zeros((2, OBS_DIM), dtype=np.float32), deterministic=True)
    assert torch.equal(agent.generator.get_state(), state)


@pytest.mark.parametrize("name", ["sdac", "dpmd"])
def test_same_seed_gives_identical_actions_and_updates(name):
    a, b, c = small_agent(name, seed=1), small_agent(name, seed=1), small_agent(name, seed=2)
    obs = np.random.default_rng(0).normal(size=(3, OBS_DIM)).astype(np.float32)
    for step in range(3):
        np.testing.assert_array_equal(a.act(obs), b.act(obs))
        metrics_a, metrics_b = a.update(random_batch(step)), b.update(random_batch(step))
        for key in metrics_a:
            assert torch.equal(metrics_a[key], metrics_b[key]), key
    np.testing.assert_array_equal(a.act(obs, deterministic=True), b.act(obs, deterministic=True))
    assert not np.array_equal(a.act(obs, deterministic=True), c.act(obs, deterministic=True))


def test_cpu_smoke_config_blocks_are_valid_and_cheaper():
    blocks = read_yaml(CONFIG_DIR / "cpu-smoke.yaml")
    assert {"sdac", "dpmd"} <= set(blocks)  # other agents have their own blocks, tested in their own files
    for name, values in ((name, blocks[name]) for name in ("sdac", "dpmd")):
        cheap, paper = algorithms.resolve_config(name, None, values), algorithms.resolve_config(name, None)
        assert cheap.particles * cheap.diffusion_steps < paper.particles * paper.diffusion_steps
