"""TD3 (algorithms/td3.py): target policy smoothing and clipping, clipped double Q, the delayed actor and target
updates, noise-free evaluation, exploration from the agent's own generator, and the interface checks.
The checks every agent passes are also in test_agents.py."""

import numpy as np
import pytest
import torch

from algorithms import make_agent, testing
from algorithms.base import CONFIG_DIR
from algorithms.config import read_yaml
from algorithms.td3 import TD3Config

OBS_DIM, ACT_DIM, BATCH = 4, 2, 64
SMALL = {"hidden": "32,32", "batch_size": BATCH}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_agent(seed: int = 0, **overrides):
    return make_agent("td3", OBS_DIM, ACT_DIM, {**SMALL, **overrides}, seed=seed)


def random_batch(seed: int = 0, terminal_fraction: float = 0.3):
    return testing.random_batch(OBS_DIM, ACT_DIM, BATCH, seed, terminal_fraction=terminal_fraction)


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in module.parameters()])


# Interface ------------------------------------------------------------------------------------------------------
def test_interface_checks_pass_at_defaults_and_at_the_2018_paper_settings():
    testing.check_agent("td3", {"hidden": "32,32"})
    testing.check_agent("td3", {"hidden": "40,30", "actor_lr": 1e-3, "critic_lr": 1e-3, "batch_size": 100})


def test_yaml_defaults_equal_the_dataclass_defaults():
    """td3.yaml's default block repeats TD3Config's defaults (with their sources); the two must not drift."""
    defaults = TD3Config()
    for key, value in read_yaml(CONFIG_DIR / "td3.yaml")["default"].items():
        expected = getattr(defaults, key)
        assert (tuple(value) if isinstance(value, list) else value) == expected, key


# Target policy smoothing and clipping ----------------------------------------------------------------------------
def test_target_actions_are_the_target_actor_plus_clipped_noise_clipped_to_the_action_box():
    """a' = clip(mu_target(s') + clip(sigma xi, -c, c), -1, 1), xi from the agent's generator. A large sigma makes
    both clips bind often; a target actor with a large output scale puts mu_target near the box's edges."""
    agent = small_agent(target_noise=2.0, target_noise_clip=0.3)
    with torch.no_grad():
        agent.actor_target[0][-1].weight.mul_(20.0)  # saturate tanh for many states: mu near +-1
    next_obs = torch.randn(512, OBS_DIM, generator=torch.Generator().manual_seed(0))
    state = agent.generator.get_state()
    actions = agent.smoothed_target_actions(next_obs)

    mu = agent.actor_target(next_obs).detach()
    xi = torch.randn(mu.shape, generator=torch.Generator().set_state(state))
    expected = (mu + (2.0 * xi).clamp(-0.3, 0.3)).clamp(-1.0, 1.0)
    torch.testing.assert_close(actions, expected)
    # The clips do bind: noise at exactly +-c, and actions at exactly +-1.
    offsets = actions - mu
    inside = actions.abs() < 1.0
    assert (offsets[inside].abs() <= 0.3 + 1e-6).all()
    assert (offsets[inside].abs() > 0.3 - 1e-6).float().mean() > 0.5  # |2 xi| > 0.3 for ~88 % of draws
    assert (actions.abs() == 1.0).any() and (actions.abs() <= 1.0).all()
    # The target actor, not the online one: a changed online actor gives the same target actions.
    with torch.no_grad():
        agent.actor[0][0].weight.add_(1.0)
    agent.generator.set_state(state)
    torch.testing.assert_close(agent.smoothed_target_actions(next_obs), actions)


def test_zero_target_noise_gives_the_target_actor_action():
    agent = small_agent(target_noise=0.0)
    next_obs = torch.randn(8, OBS_DIM)
    torch.testing.assert_close(agent.smoothed_target_actions(next_obs), agent.actor_target(next_obs))


@pytest.mark.parametrize("higher", [0, 1])
def test_critic_target_uses_the_minimum_of_the_two_target_critics(higher):
    """Shift one target critic's output bias by +10: y must follow the other one, whichever it is."""
    agent = small_agent(gamma=0.9)
    batch = random_batch(1)
    with torch.no_grad():
        agent.critic_target.net[-1].bias[higher].add_(10.0)
    state = agent.generator.get_state()
    y = agent.critic_target_values(batch)

    agent.generator.set_state(state)
    next_actions = agent.smoothed_target_actions(batch.next_obs)
    q = agent.critic_target(batch.next_obs, next_actions)
    assert (q[higher] > q[1 - higher]).all()
    expected = batch.rewards + 0.9 * (1.0 - batch.terminated) * q[1 - higher]
    torch.testing.assert_close(y, expected)
    assert batch.terminated.sum() > 0  # terminal rows have y = r
    torch.testing.assert_close(y[batch.terminated == 1], batch.rewards[batch.terminated == 1])
    # Online critics do not enter the target.
    with torch.no_grad():
        agent.critic.net[-1].bias.add_(5.0)
    agent.generator.set_state(state)
    torch.testing.assert_close(agent.critic_target_values(batch), y)


def test_reward_scale_multiplies_the_reward_in_the_target():
    agent = small_agent(reward_scale=3.0)
    batch = random_batch(2)
    state = agent.generator.get_state()
    scaled = agent.critic_target_values(batch)
    agent.config = TD3Config(**{**agent.config.__dict__, "reward_scale": 1.0})
    agent.generator.set_state(state)
    torch.testing.assert_close(scaled - agent.critic_target_values(batch), 2.0 * batch.rewards)


# Delayed actor and target updates ---------------------------------------------------------------------------------
@pytest.mark.parametrize("delay", [2, 3])
def test_actor_and_targets_change_only_every_policy_delay_updates_and_critics_every_update(delay):
    tau = 0.05
    agent = small_agent(policy_delay=delay, tau=tau)
    for step in range(1, 3 * delay + 1):
        before = {name: flat(getattr(agent, name)) for name in ("actor", "critic", "actor_target", "critic_target")}
        metrics = agent.update(random_batch(step))
        after = {name: flat(getattr(agent, name)) for name in before}
        assert not torch.equal(before["critic"], after["critic"]), f"critic not updated at update {step}"
        delayed = step % delay == 0
        for name in ("actor", "actor_target", "critic_target"):
            assert torch.equal(before[name], after[name]) != delayed, (name, step, delayed)
        if delayed:  # Polyak with tau towards the online networks after their step
            for target, online in (("actor_target", "actor"), ("critic_target", "critic")):
                torch.testing.assert_close(after[target], (1 - tau) * before[target] + tau * after[online])
        else:  # the actor loss of the last delayed step is reported again
            assert float(metrics["loss/actor"]) == (0.0 if step < delay else last_actor_loss)
        last_actor_loss = float(metrics["loss/actor"])
    assert agent.num_updates == 3 * delay


@pytest.mark.parametrize("actor_q", ["first", "min", "mean"])
def test_actor_loss_is_minus_the_chosen_critic_value(actor_q):
    """TD3 maximises Q_1 (first); min and mean of the ensemble are options. The loss is taken before the step."""
    agent = small_agent(actor_q=actor_q)
    obs = random_batch(3).obs
    with torch.no_grad():
        agent.critic.net[-1].bias[1].add_(-4.0)  # Q_2 < Q_1 everywhere: the three choices differ
        q = agent.critic(obs, agent.actor(obs))
    value = {"first": q[0], "min": q.min(0).values, "mean": q.mean(0)}[actor_q]
    critic_before = flat(agent.critic)
    loss = agent._update_actor(obs)
    torch.testing.assert_close(loss, -value.mean())
    assert torch.equal(flat(agent.critic), critic_before)  # the actor step leaves the critics alone
    assert all(p.grad is None for p in agent.critic.parameters())


def test_repeated_actor_steps_raise_the_first_critic_value():
    agent = small_agent(actor_lr=1e-2)
    obs = random_batch(4).obs
    first = float(agent._update_actor(obs))
    for _ in range(50):
        last = float(agent._update_actor(obs))
    assert last < first


def test_critic_fits_a_fixed_batch():
    agent = small_agent(hidden="64,64", gamma=0.0, critic_lr=1e-3)
    batch = random_batch(0)  # gamma = 0: the target is the reward itself, a fixed regression problem
    first = float(agent.update(batch)["loss/critic"])
    for _ in range(200):
        last = float(agent.update(batch)["loss/critic"])
    assert last < 0.2 * first


# Acting -------------------------------------------------------------------------------------------------------
def test_deterministic_acting_is_the_actor_output_without_noise_and_draws_nothing():
    agent = small_agent()
    obs = np.random.default_rng(0).normal(size=(9, OBS_DIM)).astype(np.float32)
    state = agent.generator.get_state()
    actions = agent.act(obs, deterministic=True)
    np.testing.assert_array_equal(actions, agent.actor(torch.as_tensor(obs)).detach().numpy())
    assert torch.equal(agent.generator.get_state(), state)


def test_exploration_noise_is_gaussian_with_the_configured_std_from_the_agents_generator():
    agent = small_agent(exploration_noise=0.1)
    obs = np.zeros((4000, OBS_DIM), dtype=np.float32)
    mu = agent.act(obs, deterministic=True)
    assert np.abs(mu).max() < 0.6  # no clipping at the edges for a 0.1 std
    state = agent.generator.get_state()
    noise = agent.act(obs) - mu
    assert noise.std() == pytest.approx(0.1, rel=0.05) and abs(noise.mean()) < 0.01
    # From the agent's generator: the same generator state gives the same actions; another seed other actions.
    agent.generator.set_state(state)
    np.testing.assert_array_equal(agent.act(obs) - mu, noise)
    assert not np.allclose(small_agent(seed=1).act(obs[:8]), small_agent(seed=2).act(obs[:8]))
    np.testing.assert_array_equal(small_agent(seed=1).act(obs[:8]), small_agent(seed=1).act(obs[:8]))


def test_exploration_actions_are_clipped_to_the_box():
    agent = small_agent(exploration_noise=5.0)
    actions = agent.act(np.zeros((500, OBS_DIM), dtype=np.float32))
    assert np.abs(actions).max() == 1.0
