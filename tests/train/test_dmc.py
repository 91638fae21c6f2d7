"""DeepMind Control tasks in the training loop: exact env state round trips, a checkpointed run interrupted
mid-episode resumes to the same numbers as an uninterrupted one, and a tiny SAC run goes through `bench run` and
`bench report` with table normalization."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.plan.envs import make_eval_envs
from bench.report.references import normalization_table
from bench.train import env_state
from bench.train.run import run_one
from tests.helpers import bench_cli, bench_env
from tests.helpers import plan_jobs as expand

TINY_DMC = ["--algos", "sac", "--envs", "cheetah-run", "--seeds", "1", "--preset", "none", "--protocol", "dmc",
            "--steps", "2000", "--warmup", "500", "--eval-every", "1000", "--eval-episodes", "1",
            "-o", "hidden=32,32", "-o", "batch_size=32", "-o", "protocol.log_every=500", "--threads", "1",
            "--workers", "1"]


def column(path: Path, name: str) -> list[str]:
    with open(path) as handle:
        return [row[name] for row in csv.DictReader(handle)]


@pytest.mark.parametrize("env_id", ["dm_control/reacher-hard-v0", "dm_control/quadruped-run-v0"])
def test_env_state_round_trips_across_an_episode_boundary(env_id):
    """reacher moves its target inside the MjModel at every reset; quadruped is the largest state here."""
    source, target = make_eval_envs(env_id, 2)
    rng = np.random.default_rng(0)
    source.reset(seed=1)
    target.reset(seed=2)
    for _ in range(990):
        source.step(rng.uniform(-1, 1, source.action_space.shape))
    env_state.restore(target, env_state.capture(source))
    for _ in range(20):  # crosses the 1000-step limit: the next start comes from the restored task RNG
        action = rng.uniform(-1, 1, source.action_space.shape)
        expected, got = source.step(action), target.step(action)
        np.testing.assert_array_equal(expected[0], got[0])
        assert expected[1:4] == got[1:4]
        if expected[3]:
            np.testing.assert_array_equal(source.reset()[0], target.reset()[0])


def dmc_job(tmp_path: Path, suite: str):
    return expand(["sac"], ["reacher-hard"], [0], suite=suite, protocol="dmc", results_root=tmp_path,
                  protocol_overrides={"total_steps": 1500, "warmup_steps": 300, "eval_every": 1500,
                                      "eval_episodes": 1, "log_every": 100, "eval_at_start": False},
                  overrides=["hidden=32,32", "batch_size=32"], checkpoint_every=600)[0]


def test_a_run_stopped_mid_episode_resumes_to_the_uninterrupted_numbers(tmp_path):
    reference = dmc_job(tmp_path, "ref")
    assert run_one(reference, lambda event: None)["status"] == "done"

    job = dmc_job(tmp_path, "stopped")

    def stop_after_first_checkpoint(event):
        if event["event"] == "checkpoint":
            os.kill(os.getpid(), signal.SIGTERM)  # at step 600, inside the first 1000-step episode

    assert run_one(job, stop_after_first_checkpoint)["status"] == "interrupted"
    assert run_one(job, lambda event: None)["status"] == "done"
    done, ref = Path(job.run_dir), Path(reference.run_dir)
    for name in ("loss/critic", "loss/actor", "alpha", "train/episode_return"):
        assert column(done / "train.csv", name) == column(ref / "train.csv", name)
    assert column(done / "eval.csv", "eval/return_mean") == column(ref / "eval.csv", "eval/return_mean")


@pytest.fixture(scope="module")
def finished_dmc_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("dmc") / "results"
    result = bench_cli("run", *TINY_DMC, "--suite", "dmc-tiny", results_dir=results)
    assert result.returncode == 0, result.stdout + result.stderr
    return results / "dmc-tiny"


def test_sac_on_cheetah_run_trains_end_to_end_and_the_report_normalizes_it(finished_dmc_run, tmp_path):
    run = finished_dmc_run / "sac" / "dm_control__cheetah-run-v0" / "seed=0"
    assert (run / "DONE").exists()
    assert [int(step) for step in column(run / "eval.csv", "step")] == [0, 1000, 2000]
    assert {float(length) for length in column(run / "eval.csv", "eval/length_mean")} == {1000.0}

    report = bench_cli("report", str(finished_dmc_run), "--reps", "20", "--out", str(tmp_path / "report"),
                       results_dir=tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
    runs = pd.read_parquet(tmp_path / "report" / "runs.parquet")
    assert runs["env_id"].tolist() == ["dm_control/cheetah-run-v0"]
    random_return = normalization_table().for_env("dm_control/cheetah-run-v0").random
    final = float(column(run / "eval.csv", "eval/return_mean")[-1])
    assert runs["final_return"].iloc[0] == pytest.approx(final)
    aggregates = pd.read_csv(tmp_path / "report" / "aggregates.csv").set_index("metric")
    # one run: its normalized final score is every aggregate; 0 = random, 1 = the maximum return 1000
    assert aggregates.loc["Mean", "estimate"] == pytest.approx((final - random_return) / (1000.0 - random_return))
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "DeepMind Control: the maximum return, 1000" in markdown
    assert "sac: 730 ± 3.2 (tdmpc2)" in markdown  # TD-MPC2's SAC at 1M steps, the published column


RENDER_ONE_FRAME = """
from bench.plan.envs import make_eval_envs
env = make_eval_envs("dm_control/cheetah-run-v0", 1, render_mode="rgb_array")[0]
env.reset(seed=0)
frame = env.render()
print(frame.shape, frame.dtype, frame.std() > 5)
env.close()
"""


def test_dmc_renders_offscreen_at_the_suites_frame_size():
    """What `bench eval --video` writes for a DMC run (tests/train/test_evaluate.py reads a video file back). In a
    fresh process: dm_control picks its OpenGL backend when first imported, and this one has imported it already."""
    result = subprocess.run([sys.executable, "-c", RENDER_ONE_FRAME], capture_output=True, text=True, timeout=300,
                            env=bench_env(Path("unused"), MUJOCO_GL="egl"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "(240, 320, 3) uint8 True"
