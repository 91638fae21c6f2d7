"""The MultiGoal2D-v0 probe env (bench/plan/probe_env.py) and `bench probe` (bench/report/probe.py)."""

import gymnasium as gym
import numpy as np
import pytest

from algorithms.config import ConfigError
from bench.report import probe
from bench.cli import main as bench_main
from bench.plan.envs import make_vector_env, resolve_env_id
from bench.plan.probe_env import ENV_ID, GOALS, MAX_EPISODE_STEPS, MultiGoal2DEnv
from tests.helpers import TINY, bench_cli

ZERO = np.zeros(2)


def symmetries(points: np.ndarray) -> list[np.ndarray]:
    """The square's eight symmetries applied to points [..., 2]."""
    x, y = points[..., 0], points[..., 1]
    return [np.stack(p, -1) for p in [(x, y), (-y, x), (-x, -y), (y, -x), (x, -y), (-x, y), (y, x), (-y, -x)]]


def test_reward_is_maximal_at_each_of_the_four_goals():
    env = MultiGoal2DEnv()
    at_goals = env.reward(GOALS, ZERO)
    assert np.all(at_goals == at_goals[0])  # all four goals equally good
    grid = np.stack(np.meshgrid(*[np.linspace(-7, 7, 141)] * 2), -1).reshape(-1, 2)
    rewards = env.reward(grid, ZERO)
    assert rewards.max() <= at_goals[0] + 1e-12
    # Each goal is a strict local maximum: moving off it in any direction lowers the reward.
    for goal in GOALS:
        for angle in np.linspace(0, 2 * np.pi, 16, endpoint=False):
            off = goal + 0.3 * np.array([np.cos(angle), np.sin(angle)])
            assert env.reward(off, ZERO) < env.reward(goal, ZERO)
    # Far from every goal the reward is lower than anywhere inside a goal.
    assert env.reward(np.array([0.0, 0.0]), ZERO) < env.reward(GOALS[0] + [0.9, 0.0], ZERO)
    # Acting costs: the same position with a larger action earns less.
    assert env.reward(GOALS[0], np.ones(2)) < env.reward(GOALS[0], ZERO)


def test_reward_is_symmetric_under_rotations_and_reflections():
    env = MultiGoal2DEnv()
    points = np.random.default_rng(0).uniform(-7, 7, size=(500, 2))
    actions = np.random.default_rng(1).uniform(-1, 1, size=(500, 2))
    reference = env.reward(points, actions)
    for moved_points, moved_actions in zip(symmetries(points), symmetries(actions)):
        np.testing.assert_allclose(env.reward(moved_points, moved_actions), reference, atol=1e-12)
    assert {tuple(g) for g in np.concatenate(symmetries(GOALS))} == {tuple(g) for g in GOALS}


def test_episode_ends_in_the_goal_it_reaches_or_at_the_time_limit():
    env = gym.make(ENV_ID)
    for goal_index, goal in enumerate(GOALS):
        obs, _ = env.reset(seed=goal_index)
        assert np.abs(obs).max() <= 0.1
        total, terminated = 0.0, False
        for _ in range(MAX_EPISODE_STEPS):
            obs, reward, terminated, truncated, info = env.step(goal / 5.0)  # full speed towards the goal
            total += reward
            if terminated:
                break
        assert terminated and info["goal"] == goal_index and np.linalg.norm(obs - goal) <= 1.0
    env.reset(seed=0)
    steps = 0
    truncated = terminated = False
    while not (terminated or truncated):
        _, _, terminated, truncated, info = env.step(np.zeros(2))
        steps += 1
    assert truncated and not terminated and steps == MAX_EPISODE_STEPS and info["goal"] == -1


def test_short_name_resolves_and_harness_envs_build():
    assert resolve_env_id("MultiGoal2D") == ENV_ID == resolve_env_id("multigoal2d")
    envs = make_vector_env(ENV_ID, 2)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 2) and envs.single_action_space.shape == (2,)
    envs.close()


def test_bad_probe_arguments_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match=r"'1,2,3' is not 'x,y'"):
        probe.parse_states("0,0;1,2,3")
    with pytest.raises(ConfigError, match=r"does not exist"):
        probe.probe_runs([tmp_path / "nothing"])
    with pytest.raises(ConfigError, match=r"no run trained on MultiGoal2D-v0"):
        probe.probe_runs([tmp_path])


def test_bench_probe_draws_trained_agents(tmp_path, capsys):
    """Train for a few hundred steps with the real `bench run`, then `bench probe` the suite: PNG and PDF
    written, the table lists the run (one row per run; any registered algorithm loads the same way)."""
    results = tmp_path / "results"
    done = bench_cli("run", "--algos", "cpql", "--envs", "MultiGoal2D", "--suite", "probe", "--workers", "1",
                     *TINY, "-o", "cpql.candidates=8", results_dir=results)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "fig" / "probe.png"
    assert bench_main(["probe", str(results / "probe"), "--samples", "64", "--episodes", "4", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000 and out.with_suffix(".pdf").exists()
    printed = capsys.readouterr().out
    assert "goals covered" in printed and f"figure: {out}" in " ".join(printed.split())
    found = probe.probe_runs([results / "probe"])
    result = probe.probe_agent(found[0], probe.parse_states("0,0"), 64, 3, seed=0)
    assert result.name == "cpql seed=0 (step 300)\nprobe"  # the final agent, from ckpt/last.pt
    assert result.actions[0].shape == (64, 2) and np.abs(result.actions[0]).max() <= 1.0
    assert abs(result.shares(0).sum() - 1.0) < 1e-9 and 1 <= result.goals_covered(0) <= 4
    assert len(result.trajectories) == 3 and all(path.shape[1] == 2 for path in result.trajectories)
