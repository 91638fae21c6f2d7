"""`bench eval` and `load_agent`: a finished run's agent, evaluated again with the trainer's seeds, reproduces the
run's final evaluation exactly; videos have one frame per step at the renderer's size; bad input is one line."""

import csv
from pathlib import Path

import numpy as np
import pytest

from algorithms.config import ConfigError
from bench.train.evaluate import evaluate_run, load_agent
from tests.helpers import bench_cli

# InvertedPendulum: a MuJoCo task whose episodes end early (terminated), so episode lengths differ
TINY = ["--algos", "sac", "--envs", "InvertedPendulum", "--seeds", "1", "--preset", "none", "--protocol", "quick",
        "--steps", "600", "--warmup", "200", "--eval-every", "300", "--eval-episodes", "3",
        "-o", "hidden=32,32", "-o", "batch_size=32", "-o", "protocol.log_every=100", "--threads", "1",
        "--workers", "1"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("eval") / "results"
    result = bench_cli("run", *TINY, "--suite", "e", results_dir=results)
    assert result.returncode == 0, result.stdout + result.stderr
    return results / "e" / "sac" / "InvertedPendulum-v5" / "seed=0"


def final_eval_return(run: Path) -> float:
    with open(run / "eval.csv") as handle:
        return float(list(csv.DictReader(handle))[-1]["eval/return_mean"])


def test_a_deterministic_eval_reproduces_the_final_evaluation_exactly(finished_run, tmp_path):
    evaluation = evaluate_run(finished_run)
    assert evaluation.step == 600 and len(evaluation.returns) == 3
    assert evaluation.mean == final_eval_return(finished_run) == evaluation.recorded
    cli = bench_cli("eval", str(finished_run), results_dir=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert "exactly this evaluation's mean" in cli.stdout


def test_episode_count_and_stochastic_acting_are_honoured(finished_run):
    """(Not "the same first episodes": the batch the policy acts on changes with the count; docs/evaluate.md.)"""
    deterministic = evaluate_run(finished_run)
    five = evaluate_run(finished_run, episodes=5)
    assert len(five.returns) == len(five.lengths) == 5 and five.recorded == deterministic.recorded
    stochastic = evaluate_run(finished_run, stochastic=True)
    assert not stochastic.deterministic and not np.array_equal(stochastic.returns, deterministic.returns)


def test_load_agent_gives_the_trained_weights(finished_run):
    agent = load_agent(finished_run)
    obs = np.zeros((1, 4), dtype=np.float32)
    assert agent.act(obs, deterministic=True).shape == (1, 1)
    assert np.array_equal(agent.act(obs, deterministic=True), load_agent(finished_run).act(obs, deterministic=True))


def test_the_video_has_one_frame_per_step_at_the_renderers_size(finished_run, tmp_path, monkeypatch):
    import imageio.v3 as iio

    monkeypatch.setenv("MUJOCO_GL", "egl")
    video = tmp_path / "pendulum.mp4"
    evaluation = evaluate_run(finished_run, episodes=1, video=video)
    assert evaluation.frames == evaluation.lengths[0] + 1
    frames = iio.imread(video)
    assert frames.shape == (evaluation.lengths[0] + 1, 480, 480, 3)
    assert frames.std() > 5


@pytest.mark.parametrize("args,message", [
    (["{missing}"], "does not exist"),
    (["{root}"], "is not a run directory"),
    (["{run}", "--checkpoint", "{missing}"], "does not exist; give a .pt file or 'last'"),
])
def test_bad_input_on_the_command_line_is_one_line_and_exit_2(finished_run, tmp_path, args, message):
    values = {"run": finished_run, "root": tmp_path, "missing": tmp_path / "nope"}
    result = bench_cli("eval", *[arg.format(**values) for arg in args], results_dir=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("kwargs,message", [
    ({"episodes": 0}, "--episodes must be >= 1"),
    ({"video": "clip.avi"}, "give a file name ending in .mp4"),
    ({"video": "nope/clip.mp4"}, "does not exist"),
    ({"checkpoint_file": "{run}/config.yaml"}, "unreadable"),
])
def test_bad_arguments_name_the_value(finished_run, tmp_path, kwargs, message):
    values = {key: Path(str(value).format(run=finished_run)) if isinstance(value, str) and key != "episodes"
              else value for key, value in kwargs.items()}
    if "video" in values:
        values["video"] = tmp_path / values["video"]
    with pytest.raises(ConfigError, match=message):
        evaluate_run(finished_run, **values)
