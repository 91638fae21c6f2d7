"""Environment names, action rescaling, seeding, and the replay buffer / loop bookkeeping around them."""

import numpy as np
import pytest

from algorithms.config import ConfigError
from bench.plan.envs import RunSeeds, make_eval_envs, make_vector_env, resolve_env_id
from bench.train.replay import ReplayBuffer


@pytest.mark.parametrize("name,env_id", [("Ant", "Ant-v5"), ("humanoid", "Humanoid-v5"), ("Pendulum", "Pendulum-v1"),
                                          ("Walker2d", "Walker2d-v5"), ("Ant-v4", "Ant-v4")])
def test_names_resolve_to_pinned_ids(name, env_id):
    assert resolve_env_id(name) == env_id


def test_env_version_applies_to_short_names():
    assert resolve_env_id("Hopper", "v4") == "Hopper-v4"


def test_env_version_leaves_tasks_without_that_version_at_their_pinned_id():
    """The sdac-paper preset's -v4 must not break Pendulum (classic control has only -v1)."""
    assert resolve_env_id("Pendulum", "v4") == "Pendulum-v1"
    assert resolve_env_id("Pendulum-v1", "v4") == "Pendulum-v1"


def test_unknown_env_names_the_valid_choices():
    with pytest.raises(ConfigError, match=r"unknown environment 'Hoper'.*Hopper.*Ant-v4"):
        resolve_env_id("Hoper")


def first_observations(seed: int, env_id: str = "Hopper-v5") -> np.ndarray:
    envs = make_vector_env(env_id, 2)
    obs, _ = envs.reset(seed=seed)
    envs.close()
    return obs


def test_same_seed_same_start_different_seed_different_start():
    np.testing.assert_array_equal(first_observations(3), first_observations(3))
    assert not np.allclose(first_observations(3), first_observations(4))
    # The two parallel envs of one run start differently too.
    obs = first_observations(3)
    assert not np.allclose(obs[0], obs[1])


def test_run_seeds_are_deterministic_and_independent():
    seeds = RunSeeds.derive(0)
    assert seeds == RunSeeds.derive(0)
    assert len(set(vars(seeds).values())) == 6
    assert seeds != RunSeeds.derive(1)


def test_agent_actions_are_rescaled_to_env_bounds():
    # Pendulum's torque range is [-2, 2]: the agent's +1 must reach the env as +2.
    env = make_eval_envs("Pendulum-v1", 1)[0]
    env.reset(seed=0)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    env.step(np.array([1.0], dtype=np.float32))
    assert env.unwrapped.last_u == pytest.approx(2.0)
    env.step(np.array([-0.5], dtype=np.float32))
    assert env.unwrapped.last_u == pytest.approx(-1.0)
    humanoid = make_eval_envs("Humanoid-v5", 1)[0]
    assert humanoid.unwrapped.action_space.high.max() == pytest.approx(0.4)
    assert humanoid.action_space.high.max() == 1.0


def test_replay_buffer_wraps_and_samples_stored_rows():
    buffer = ReplayBuffer(obs_dim=2, act_dim=1, capacity=5, seed=0)
    for i in range(7):  # two parallel envs per add -> wraps around
        buffer.add(np.full((1, 2), i), np.full((1, 1), i), np.array([i]), np.full((1, 2), i + 0.5), np.array([i % 2]))
    assert len(buffer) == 5 and buffer.position == 2
    assert sorted(buffer.rewards.tolist()) == [2, 3, 4, 5, 6]
    batch = buffer.sample(64)
    assert set(batch.rewards.tolist()) <= {2.0, 3.0, 4.0, 5.0, 6.0}
    np.testing.assert_array_equal(batch.obs[:, 0].numpy(), batch.rewards.numpy())
    np.testing.assert_array_equal(batch.terminated.numpy(), batch.rewards.numpy() % 2)
