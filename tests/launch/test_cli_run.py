"""`bench run` end to end through the real command: records, skipping, failures, bad input."""

import csv
import json

import pytest
import yaml

import algorithms

from bench.records.csvlog import EVAL_LOG_COLUMNS, TRAIN_LOG_COLUMNS
from bench.records.state import run_status
from tests.helpers import TINY, bench_cli


def read_csv(path):
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    with open(path) as handle:
        header = next(csv.reader(handle))
    return header, rows


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """Two seeds of SAC on Pendulum at a tiny budget, run once for the tests of this module."""
    results = tmp_path_factory.mktemp("sweep") / "results"
    result = bench_cli("run", "--algos", "sac", "--envs", "Pendulum", "--seeds", "2", "--suite", "e2e",
                       "--workers", "2", *TINY, results_dir=results)
    return results, result


def test_run_writes_every_record_with_fixed_columns(finished_sweep):
    results, result = finished_sweep
    assert result.returncode == 0, result.stdout + result.stderr
    assert "results: " in result.stdout and str(results / "e2e") in result.stdout.replace("\n", "")
    for seed in (0, 1):
        run = results / "e2e" / "sac" / "Pendulum-v1" / f"seed={seed}"
        assert {p.name for p in run.iterdir()} == {"config.yaml", "manifest.json", "eval.csv", "train.csv",
                                                   "summary.json", "DONE", "attempts.json", "checkpoint.json", "ckpt"}
        assert [p.name for p in (run / "ckpt").iterdir()] == ["last.pt"]  # final agent; replay data removed
        header, rows = read_csv(run / "eval.csv")
        assert tuple(header) == EVAL_LOG_COLUMNS
        assert [int(row["step"]) for row in rows] == [0, 100, 200, 300]
        assert all(int(row["eval/episodes"]) == 2 and float(row["eval/length_mean"]) == 200 for row in rows)
        header, rows = read_csv(run / "train.csv")
        assert tuple(header) == TRAIN_LOG_COLUMNS + ("loss/critic", "loss/actor", "loss/alpha", "alpha",
                                                          "entropy", "q_mean")
        assert [int(row["step"]) for row in rows] == [100, 200, 300]
        assert rows[0]["loss/critic"] == "" and float(rows[-1]["loss/critic"]) >= 0  # no updates in warm-up
        assert int(rows[-1]["updates"]) == 200

        config = yaml.safe_load((run / "config.yaml").read_text())
        assert (config["algo"], config["env_id"], config["seed"], config["suite"]) == ("sac", "Pendulum-v1", seed, "e2e")
        assert config["protocol"]["total_steps"] == 300 and config["agent"]["hidden"] == [32, 32]
        assert config["agent"]["actor_lr"] == 1e-3  # the Pendulum block of sac.yaml
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["versions"]["torch"] and manifest["versions"]["gymnasium"] and manifest["versions"]["mujoco"]
        assert manifest["hardware"]["cpu_cores"] >= 1 and manifest["end_time"] >= manifest["start_time"]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "done" and summary["total_steps"] == 300 and summary["updates"] == 200
        assert summary["final_eval_return"] == float(rows and read_csv(run / "eval.csv")[1][-1]["eval/return_mean"])
        assert summary["time/sps"] > 0 and summary["mem/rss_peak_mb"] > 50
        assert 0 <= summary["time/overhead_frac"] < 1


def test_seeds_differ(finished_sweep):
    results, _ = finished_sweep
    curves = [read_csv(results / "e2e" / "sac" / "Pendulum-v1" / f"seed={s}" / "eval.csv")[1] for s in (0, 1)]
    assert curves[0][0]["eval/return_mean"] != curves[1][0]["eval/return_mean"]


def test_rerun_skips_done_runs(finished_sweep):
    results, _ = finished_sweep
    done_marker = results / "e2e" / "sac" / "Pendulum-v1" / "seed=0" / "DONE"
    before = done_marker.read_text(), done_marker.stat().st_mtime_ns
    again = bench_cli("run", "--algos", "sac", "--envs", "Pendulum", "--seeds", "2", "--suite", "e2e", *TINY,
                      results_dir=results)
    assert again.returncode == 0, again.stderr
    assert "0 to do, 2 already done" in again.stdout and again.stdout.count("skip") >= 2
    assert (done_marker.read_text(), done_marker.stat().st_mtime_ns) == before


def test_dry_run_lists_runs_and_writes_nothing(results_dir):
    result = bench_cli("run", "--algos", "sac", "--envs", "Pendulum,Hopper", "--seeds", "0-1", "--preset", "none",
                       "--dry-run", results_dir=results_dir)
    assert result.returncode == 0
    assert "sac/Hopper-v5/seed=1" in result.stdout and "4 runs" in result.stdout
    assert not results_dir.exists()


def test_failing_run_is_recorded_and_others_continue(results_dir):
    result = bench_cli("run", "--algos", "sac,nan_sac", "--envs", "Pendulum", "--seeds", "1", "--suite", "f",
                       "--plugin", "nan_agent", "--workers", "2", *TINY, results_dir=results_dir)
    assert result.returncode == 1
    assert "1 run(s) failed" in result.stdout and "nan_sac/Pendulum-v1/seed=0" in result.stdout
    good = results_dir / "f" / "sac" / "Pendulum-v1" / "seed=0"
    bad = results_dir / "f" / "nan_sac" / "Pendulum-v1" / "seed=0"
    assert (good / "DONE").exists()
    assert not (bad / "DONE").exists()
    error = (bad / "error.txt").read_text()
    assert "Traceback" in error and "NonFiniteMetric" in error and "loss/critic" in error
    assert json.loads((bad / "summary.json").read_text())["status"] == "failed"
    assert run_status(bad).state == "failed"


@pytest.mark.parametrize("args,message", [
    (["--algos", "sdacc"], f"unknown algorithm 'sdacc' (did you mean 'sdac'?); valid choices: {', '.join(algorithms.available_algorithms())}"),
    (["--envs", "Hoper"], "unknown environment 'Hoper'"),
    (["-o", "lr=1e-3"], "unknown key 'lr' for algorithm 'sac'; valid keys: activation, actor_lr"),
    (["-o", "batch_size=big"], "bad value for 'batch_size'"),
    (["-o", "protocol.eval_episodez=3"], "valid keys of Protocol"),
    (["--protocol", "fast"], "unknown protocol 'fast'; valid choices: dacer-paper, dmc, quick, sdac-paper, standard"),
    (["--seeds", "x"], "--seeds 'x'"),
    (["--device", "tpu"], "valid choices are cpu, cuda"),
])
def test_bad_input_exits_nonzero_names_choices_and_writes_nothing(results_dir, args, message):
    base = {"--algos": "sac", "--envs": "Pendulum"}
    flags = dict(zip(args[::2], args[1::2]))
    command = ["run"]
    for flag, value in {**base, **{k: v for k, v in flags.items() if k in base}}.items():
        command += [flag, value]
    command += [item for pair in flags.items() if pair[0] not in base for item in pair]
    result = bench_cli(*command, "--steps", "300", results_dir=results_dir)
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split()), result.stderr
    assert not results_dir.exists()


def test_list_shows_algorithms_envs_and_protocols(results_dir):
    result = bench_cli("list", results_dir=results_dir)
    assert result.returncode == 0
    for expected in ("sac", "Humanoid-v5", "sdac-paper", "50,000 x 20"):
        assert expected in result.stdout
