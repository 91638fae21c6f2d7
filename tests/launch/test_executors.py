"""The local executor runs runs in parallel with capped torch threads; the debug executor runs the SLURM task in
process; the executor choice is validated."""

import json
import os

import pytest

from algorithms.config import ConfigError
from bench.launch.profiles import load_profile
from tests.helpers import TINY, bench_cli


def intervals(results, suite, algo, seeds):
    spans = []
    for seed in seeds:
        attempts = json.loads((results / suite / algo / "Pendulum-v1" / f"seed={seed}" / "attempts.json").read_text())
        spans += [(a["started"], a["last_alive"]) for a in attempts]
    return spans


def union_length(spans):
    total, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        total += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return total


def max_overlap(spans):
    events = sorted([(start, 1) for start, _ in spans] + [(stop, -1) for _, stop in spans], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_two_workers_run_four_runs_in_parallel_with_capped_torch_threads(results_dir):
    """4 equal runs (SAC sleeping 10 ms per update, so a run's length hardly depends on CPU load) on 2 workers:
    at most 2 run at a time, and together they take clearly less time than one after the other (the sum of
    their durations). No --threads: the default cap is cores / workers."""
    result = bench_cli("run", "--algos", "slow_sac", "--envs", "Pendulum", "--seeds", "4", "--suite", "par",
                       "--workers", "2", "--plugin", "slow_agent", *[a for a in TINY if a not in ("--threads", "1")],
                       results_dir=results_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    spans = intervals(results_dir, "par", "slow_sac", range(4))
    serial, parallel = sum(stop - start for start, stop in spans), union_length(spans)
    assert max_overlap(spans) == 2
    assert parallel < 0.7 * serial, (parallel, serial)
    expected_threads = max(1, (os.cpu_count() or 1) // 2)
    for seed in range(4):
        summary = json.loads((results_dir / "par" / "slow_sac" / "Pendulum-v1" / f"seed={seed}" / "summary.json")
                             .read_text())
        assert summary["torch_threads"] == expected_threads


def test_debug_executor_runs_the_slurm_task_in_process_and_saves_the_resolved_spec(results_dir):
    result = bench_cli("run", "--algos", "sac", "--envs", "Pendulum", "--seeds", "1", "--suite", "dbg",
                       "--executor", "debug", *TINY, results_dir=results_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    run = results_dir / "dbg" / "sac" / "Pendulum-v1" / "seed=0"
    assert (run / "DONE").exists() and "submitit debug executor" in result.stdout
    attempts = json.loads((run / "attempts.json").read_text())
    assert attempts[0]["slurm_job"] is None and attempts[0]["outcome"] == "done"
    assert list((results_dir / "dbg" / "slurm" / "debug").iterdir())  # submitit's folder for the debug jobs
    resolved = (results_dir / "dbg" / "sweep.yaml").read_text()
    assert "executor: debug" in resolved and "- sac/Pendulum-v1/seed=0" in resolved


def test_slurm_without_profile_and_bad_profiles_are_rejected(results_dir, tmp_path):
    no_profile = bench_cli("run", "--algos", "sac", "--envs", "Pendulum", "--executor", "slurm", *TINY,
                           results_dir=results_dir)
    assert no_profile.returncode == 2 and "needs a cluster profile" in no_profile.stderr
    assert not results_dir.exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("partition: gpu\ncpus: 4\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'cpus'.*valid keys of ClusterProfile: account, "):
        load_profile(bad)
    bad.write_text("timeout_min: 0\n")
    with pytest.raises(ConfigError, match="timeout_min must be >= 1, got 0"):
        load_profile(bad)
    bad.write_text("sbatch: [exclusive]\n")
    with pytest.raises(ConfigError, match="'sbatch' must map option names to values"):
        load_profile(bad)


def test_a_requeued_slurm_task_takes_over_its_own_lock_from_another_node(tmp_path, monkeypatch):
    """After a node failure the requeued task may start on another node while the dead attempt's RUNNING lock
    still looks alive there (recent heartbeat); the same SLURM task may take it, anything else may not."""
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "RUNNING").write_text(json.dumps({"host": "other-node", "pid": 1, "slurm_job": "77_1"}))
    (directory / "attempts.json").write_text("[]")  # a sign of life just now
    from bench.records import lock

    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert lock.is_running(directory) and not lock.claim(directory)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert not lock.claim(directory)  # another task of the array
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert lock.claim(directory)
    assert json.loads((directory / "RUNNING").read_text())["slurm_job"] == "77_1"


def test_children_left_after_the_pool_shut_down_are_stopped():
    import multiprocessing as mp
    import time

    from bench.launch.local_pool import stop_stray_children

    stray = mp.get_context("spawn").Process(target=time.sleep, args=(600,))
    stray.start()
    assert stray.is_alive()
    stop_stray_children()
    assert not stray.is_alive() and stray.exitcode is not None and stray not in mp.active_children()
