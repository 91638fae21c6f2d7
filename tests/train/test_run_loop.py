"""The training loop in-process: what goes into the replay buffer, UTD accounting, the eval schedule."""

import numpy as np
import pytest

from bench.jobs import RunDir
from bench.train.trainer import Trainer
from tests.helpers import plan_jobs as expand

SMALL_AGENT = ["hidden=32,32", "batch_size=32"]


def trainer_for(tmp_path, env: str, protocol_overrides: dict) -> Trainer:
    job = expand(["sac"], [env], [0], suite="loop", protocol="quick", protocol_overrides=protocol_overrides,
                 overrides=SMALL_AGENT, results_root=tmp_path)[0]
    directory = tmp_path / "run"
    directory.mkdir()
    return Trainer(job, RunDir(directory), lambda event: None)


def test_truncation_is_not_terminal_and_final_observation_is_kept(tmp_path):
    # Pendulum never terminates; it is truncated every 200 steps. 2 envs x 250 steps crosses that boundary.
    trainer = trainer_for(tmp_path, "Pendulum", {"total_steps": 500, "n_envs": 2, "warmup_steps": 500,
                                                 "eval_every": 500, "log_every": 100, "eval_episodes": 1})
    trainer.train()
    buffer = trainer.buffer
    assert len(buffer) == 500 and buffer.terminated.sum() == 0
    # Rows alternate env 0, env 1. Within an episode next_obs(t) == obs(t+1); at the truncation step (t=199)
    # the stored next_obs is the true last observation, not the reset observation of the next episode.
    env0_obs, env0_next = buffer.obs[0::2], buffer.next_obs[0::2]
    np.testing.assert_array_equal(env0_next[:199], env0_obs[1:200])
    assert not np.allclose(env0_next[199], env0_obs[200])
    # Pendulum observations are (cos, sin, velocity): a real step keeps cos^2 + sin^2 = 1 and is continuous.
    assert np.linalg.norm(env0_next[199][:2]) == pytest.approx(1.0, abs=1e-5)
    assert trainer.episodes.count == 2  # one truncated episode per env


def test_terminations_are_stored_as_done(tmp_path):
    trainer = trainer_for(tmp_path, "InvertedPendulum", {"total_steps": 300, "warmup_steps": 300,
                                                         "eval_every": 300, "log_every": 100, "eval_episodes": 1})
    trainer.train()
    # Random actions topple the pole within a few dozen steps: each episode ends in exactly one terminal row.
    assert trainer.buffer.terminated.sum() == trainer.episodes.count > 3


@pytest.mark.parametrize("n_envs,utd,expected_updates", [(1, 1.0, 200), (5, 0.2, 40), (2, 0.25, 50), (1, 2.0, 400)])
def test_update_to_data_ratio(tmp_path, n_envs, utd, expected_updates):
    trainer = trainer_for(tmp_path, "Pendulum", {"total_steps": 300, "warmup_steps": 100, "n_envs": n_envs,
                                                 "utd": utd, "eval_every": 300, "log_every": 100, "eval_episodes": 1})
    summary = trainer.train()
    assert summary["updates"] == expected_updates == trainer.updates


def test_eval_rows_follow_the_schedule(tmp_path):
    trainer = trainer_for(tmp_path, "Pendulum", {"total_steps": 250, "warmup_steps": 100, "eval_every": 100,
                                                 "log_every": 50, "eval_episodes": 2})
    summary = trainer.train()
    assert [step for step, _ in trainer.eval_returns] == [0, 100, 200, 250]
    assert summary["final_eval_step"] == 250 and summary["total_steps"] == 250
