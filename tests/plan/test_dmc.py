"""DeepMind Control Suite tasks through shimmy: names, flattened observations, unit actions, 1000-step episodes,
the run folder of a namespaced id, `bench list` and the normalization table."""

import os

import gymnasium as gym
import numpy as np
import pytest

from bench.jobs import RunDir, SuiteDir, env_folder
from bench.plan import dmc
from bench.plan.envs import SHORT_NAMES, make_eval_envs, resolve_env_id, space_info
from bench.report.references import normalization_table
from tests.helpers import bench_cli

ISSUE_TASKS = ("cheetah-run", "walker-walk", "walker-run", "hopper-hop", "humanoid-walk", "humanoid-run",
               "quadruped-run", "finger-spin", "reacher-hard", "acrobot-swingup")


@pytest.mark.parametrize("name", ["cheetah-run", "Cheetah-Run", "dm_control/cheetah-run-v0"])
def test_short_names_and_full_ids_resolve_to_the_shimmy_id(name):
    assert resolve_env_id(name) == "dm_control/cheetah-run-v0"


def test_a_paper_env_version_leaves_dmc_ids_at_v0():
    assert resolve_env_id("walker-walk", "v4") == "dm_control/walker-walk-v0"


def test_the_papers_tasks_all_have_short_names_and_normalization_rows():
    table = normalization_table()
    for task in ISSUE_TASKS:
        env_id = SHORT_NAMES[task]
        assert env_id == f"dm_control/{task}-v0" and env_id in gym.registry
        row = table.for_env(env_id)
        assert row.reference == 1000.0 and 0.0 <= row.random < 200.0  # quadruped standing upright earns ~150


def test_observations_are_flat_actions_are_unit_and_episodes_last_1000_steps():
    env = make_eval_envs("dm_control/cheetah-run-v0", 1)[0]
    assert space_info("dm_control/cheetah-run-v0") == (17, 6, 1000)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (17,) and env.observation_space.shape == (17,)
    assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(np.ones(6, dtype=np.float32))
        assert 0.0 <= reward <= 1.0
        steps, done = steps + 1, terminated or truncated
    assert steps == 1000 and truncated and not terminated  # the suite's time limit is a truncation
    env.close()


def test_same_reset_seed_same_start_state():
    first, second = make_eval_envs("dm_control/reacher-hard-v0", 2)
    np.testing.assert_array_equal(first.reset(seed=4)[0], second.reset(seed=4)[0])
    assert not np.array_equal(first.reset(seed=4)[0], second.reset(seed=5)[0])


def test_a_namespaced_id_is_one_folder_and_reads_back(tmp_path):
    run = SuiteDir.at(tmp_path, "s").run("sac", "dm_control/cheetah-run-v0", 2)
    assert run.path == tmp_path / "s" / "sac" / "dm_control__cheetah-run-v0" / "seed=2"
    again = RunDir(run.path)
    assert (again.algo, again.env_id, again.seed, again.suite) == ("sac", "dm_control/cheetah-run-v0", 2, "s")
    assert SuiteDir.at(tmp_path, "s").run_named(again.name) == run
    assert env_folder("Hopper-v5") == "Hopper-v5"


def test_headless_rendering_backend_is_chosen_only_without_a_display(monkeypatch):
    monkeypatch.setattr(dmc, "_gl_chosen_here", False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("MUJOCO_GL", "unset-below")  # recorded, so the test leaves the variable as it found it
    monkeypatch.delenv("MUJOCO_GL")
    assert dmc.choose_headless_gl() is None
    monkeypatch.delenv("DISPLAY")
    assert "MUJOCO_GL=egl" in dmc.choose_headless_gl()
    assert os.environ["MUJOCO_GL"] == "egl"


def test_bench_list_shows_the_suite(tmp_path):
    result = bench_cli("list", results_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    for task in ISSUE_TASKS:
        assert task in result.stdout
    assert "dmc" in result.stdout  # the protocol
