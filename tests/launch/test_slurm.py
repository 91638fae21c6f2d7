"""`bench run --executor slurm` against a real single-node SLURM cluster: arrays, requeue after USR2, no resubmission
of finished or queued runs, the code snapshot, and `bench status` joined with the queue."""

import csv
import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, TINY, bench_cli

pytestmark = pytest.mark.slurm

CONFIGS = ROOT / "algorithms" / "configs"
SDAC_CHEAP = ["--config", str(CONFIGS / "cpu-smoke.yaml"), "--config", str(CONFIGS / "small-nets.yaml")]
GRID = ["--algos", "sac,sdac", "--envs", "Pendulum", "--suite", "arr", *TINY, *SDAC_CHEAP]


def write_profile(path: Path, **settings) -> Path:
    lines = {"partition": "debug", "timeout_min": 10, "cpus_per_task": 1, "mem_gb": 1, "array_parallelism": 4,
             "max_array_size": 100, **settings}
    path.write_text("".join(f"{key}: {value}\n" for key, value in lines.items()))
    return path


def wait_until(predicate, timeout: float, what: str) -> float:
    began = time.time()
    while not predicate():
        if time.time() - began > timeout:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.25)
    return time.time() - began


def submissions(suite_dir: Path) -> list[dict]:
    path = suite_dir / "slurm" / "submissions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def queue_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def cancel(suite_dir: Path) -> None:
    arrays = [array for entry in submissions(suite_dir) for array in entry["arrays"]]
    if arrays:
        subprocess.run(["scancel", *arrays], capture_output=True)


@pytest.fixture(scope="module")
def array_sweep(slurm_cluster, tmp_path_factory):
    """2 algorithms x 1 env x 2 seeds submitted as one array; returns once every run directory is DONE."""
    base = tmp_path_factory.mktemp("slurm-array")
    results, profile = base / "results", write_profile(base / "cluster.yaml")
    began = time.time()
    submitted = bench_cli("run", *GRID, "--seeds", "2", "--executor", "slurm", "--profile", str(profile),
                          results_dir=results, timeout=120)
    submit_s = time.time() - began
    suite = results / "arr"
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    runs = [suite / algo / "Pendulum-v1" / f"seed={seed}" for algo in ("sac", "sdac") for seed in (0, 1)]
    try:
        wait_until(lambda: all((run / "DONE").exists() for run in runs), 240, "4 DONE runs")
    finally:
        cancel(suite)
    return results, suite, profile, submitted, submit_s


def test_sweep_is_one_array_and_every_run_finishes(array_sweep):
    results, suite, _, submitted, submit_s = array_sweep
    entries = submissions(suite)
    assert len(entries) == 1 and len(entries[0]["arrays"]) == 1
    array = entries[0]["arrays"][0]
    assert f"submitted 4 run(s) as array job(s) {array}" in submitted.stdout
    assert "logs: " in submitted.stdout and "bench status" in submitted.stdout
    assert submit_s < 60  # submits and exits; never waits for the jobs
    assert sorted(entries[0]["tasks"]) == [f"{array}_{index}" for index in range(4)]
    assert sorted(entries[0]["tasks"].values()) == sorted(f"{a}/Pendulum-v1/seed={s}" for a in ("sac", "sdac")
                                                          for s in (0, 1))
    for task, run in entries[0]["tasks"].items():
        directory = suite / run
        summary = json.loads((directory / "summary.json").read_text())
        assert summary["status"] == "done" and summary["total_steps"] == 300 and summary["torch_threads"] == 1
        attempts = json.loads((directory / "attempts.json").read_text())
        assert [(a["slurm_job"], a["outcome"]) for a in attempts] == [(task, "done")]
        # The task imported the sweep's snapshot of the package, not the checkout the tests run from.
        manifest = json.loads((directory / "manifest.json").read_text())
        assert Path(manifest["package_dir"]) == Path(entries[0]["code"])
        assert manifest["git"]["commit"]  # the snapshot names the commit it was copied from
        log = Path(entries[0]["logs"]) / f"{task}_0_log.out"
        assert f"done   {run}: final return" in log.read_text()  # readable lines, no raw dicts
        assert "{" not in "".join(line for line in log.read_text().splitlines() if run in line)
    code = Path(entries[0]["code"])
    assert (code / "bench" / "train" / "run.py").read_text() == (ROOT / "bench" / "train" / "run.py").read_text()
    assert (suite / "sweep.yaml").exists()


def test_rerun_after_completion_submits_nothing(array_sweep):
    results, suite, profile, _, _ = array_sweep
    before = queue_ids()
    again = bench_cli("run", *GRID, "--seeds", "2", "--executor", "slurm", "--profile", str(profile),
                      results_dir=results, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "nothing to submit: all 4 runs are done, running or queued (4 done)" in again.stdout
    assert len(submissions(suite)) == 1
    assert queue_ids() <= before


def test_partial_sweep_submits_only_what_is_left_and_queued_runs_are_not_resubmitted(array_sweep):
    results, suite, _, _, _ = array_sweep
    profile = write_profile(results.parent / "chunked.yaml", max_array_size=1)  # 2 runs -> 2 submissions
    try:
        more = bench_cli("run", *GRID, "--seeds", "3", "--executor", "slurm", "--profile", str(profile),
                         results_dir=results, timeout=120)
        assert more.returncode == 0, more.stderr
        assert "submitted 2 run(s)" in more.stdout and "left alone: 4 done" in more.stdout
        assert sorted(submissions(suite)[-1]["tasks"].values()) == ["sac/Pendulum-v1/seed=2", "sdac/Pendulum-v1/seed=2"]
        assert len(submissions(suite)[-1]["arrays"]) == 2
        again = bench_cli("run", *GRID, "--seeds", "3", "--executor", "slurm", "--profile", str(profile),
                          results_dir=results, timeout=120)
        assert "nothing to submit" in again.stdout and len(submissions(suite)) == 2
        status = bench_cli("status", str(suite), results_dir=results)
        assert status.returncode == 0
        lines = {line.split()[1]: line for line in status.stdout.splitlines() if "arr/" in line}
        assert all("done" in lines[f"arr/{a}/Pendulum-v1/seed={s}"] for a in ("sac", "sdac") for s in (0, 1))
        tasks = {run: task for task, run in submissions(suite)[-1]["tasks"].items()}
        for algo in ("sac", "sdac"):  # submitted seconds ago: queued or running, with its job id; never "not started"
            line = lines[f"arr/{algo}/Pendulum-v1/seed=2"]
            assert ("pending" in line or "running" in line or "done" in line) and "not started" not in line, line
            assert tasks[f"{algo}/Pendulum-v1/seed=2"] in line or "done" in line, line
    finally:
        cancel(suite)


def test_signalled_run_checkpoints_is_requeued_and_finishes_with_the_exact_budget(slurm_cluster, tmp_path):
    """A 2-minute time limit, and the USR2 SLURM sends `signal_delay_s` before it (sent here at once, with
    scancel, instead of waiting): submitit classifies it as a time-out, the run checkpoints, the task is requeued
    and resumes from the checkpoint."""
    results, profile = tmp_path / "results", write_profile(tmp_path / "short.yaml", timeout_min=2, signal_delay_s=30)
    steps = 1500
    args = ["--algos", "sac", "--envs", "Pendulum", "--seeds", "1", "--suite", "rq", "--protocol", "quick",
            "--steps", str(steps), "--warmup", "100", "--eval-every", "300", "--eval-episodes", "2",
            "--checkpoint-every", "100", "-o", "protocol.log_every=100", "-o", "batch_size=32", "-o", "hidden=32,32"]
    submitted = bench_cli("run", *args, "--executor", "slurm", "--profile", str(profile), results_dir=results)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    suite, run = results / "rq", results / "rq" / "sac" / "Pendulum-v1" / "seed=0"
    task = next(iter(submissions(suite)[0]["tasks"]))
    try:
        wait_until(lambda: _checkpoint_step(run) >= 300, 120, "a checkpoint at step >= 300")
        subprocess.run(["scancel", "--signal=USR2", task], check=True)
        requeue_s = wait_until(lambda: (run / "DONE").exists(), 180, "the requeued run to finish")
    finally:
        cancel(suite)
    attempts = json.loads((run / "attempts.json").read_text())
    assert [(a["slurm_job"], a["slurm_restart"], a["outcome"]) for a in attempts] == [
        (task, 0, "interrupted"), (task, 1, "done")]
    assert 0 < attempts[0]["end_step"] == attempts[1]["start_step"] < steps  # resumed where it stopped
    summary = json.loads((run / "summary.json").read_text())
    assert summary["total_steps"] == steps and summary["resumes"] == 1 and summary["updates"] == steps - 100
    with open(run / "eval.csv") as handle:
        assert [int(row["step"]) for row in csv.DictReader(handle)] == list(range(0, steps + 1, 300))
    log = (Path(submissions(suite)[0]["logs"]) / f"{task}_0_log.err").read_text()
    assert "Caught signal SIGUSR2" in log and "timed-out" in log
    print(f"requeue round trip (signal -> DONE): {requeue_s:.1f} s")


def _checkpoint_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoint.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def test_submission_refused_by_sbatch_exits_2_with_its_message(slurm_cluster, tmp_path):
    profile = write_profile(tmp_path / "bad.yaml", partition="nosuchpartition")
    result = bench_cli("run", "--algos", "sac", "--envs", "Pendulum", "--suite", "bad", *TINY, "--executor", "slurm",
                       "--profile", str(profile), results_dir=tmp_path / "results")
    assert result.returncode == 2
    assert "sbatch refused the submission" in result.stderr and "invalid partition" in result.stderr
    assert submissions(tmp_path / "results" / "bad") == []


def test_a_task_that_cannot_start_is_shown_with_its_log_and_not_resubmitted_again(slurm_cluster, tmp_path):
    results = tmp_path / "results"
    profile = write_profile(tmp_path / "cluster.yaml", python="/nonexistent/python3", max_start_failures=1)
    grid = ["--algos", "sac", "--envs", "Pendulum", "--suite", "nostart", *TINY, "--executor", "slurm",
            "--profile", str(profile)]
    first = bench_cli("run", *grid, results_dir=results, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    suite = results / "nostart"
    tasks = set(submissions(suite)[0]["tasks"])
    try:
        wait_until(lambda: not tasks & queue_ids(), 120, "the task to leave the queue")
    finally:
        cancel(suite)

    status = bench_cli("status", str(suite), results_dir=results)
    line = next(line for line in status.stdout.splitlines() if line.startswith("failed to start:"))
    assert str(suite / "sac" / "Pendulum-v1" / "seed=0") in line and "/nonexistent/python3" in line, status.stdout

    again = bench_cli("run", *grid, results_dir=results, timeout=120)
    assert again.returncode == 1, again.stdout + again.stderr
    assert ("not resubmitted: sac/Pendulum-v1/seed=0: its task failed to start 1 time(s) under this profile"
            in " ".join(again.stdout.split()))
    assert len(submissions(suite)) == 1  # nothing was submitted the second time


def test_packed_tasks_requeue_together_and_finish_identical_to_the_same_runs_unpacked(slurm_cluster, tmp_path):
    """4 runs with ``runs_per_task: 2``: 2 array tasks of 2 runs each (one process per run, one thread each). USR2
    to the first task: both its runs checkpoint, the task is requeued and both resume to the exact budget, with
    the same evaluations and losses as the same runs trained unpacked and never interrupted."""
    results = tmp_path / "results"
    profile = write_profile(tmp_path / "packed.yaml", timeout_min=3, signal_delay_s=30, cpus_per_task=2,
                            runs_per_task=2, mem_gb=2)
    steps = 1500
    args = ["--algos", "sac", "--envs", "Pendulum", "--protocol", "quick", "--preset", "none",
            "--steps", str(steps), "--warmup", "100", "--eval-every", "300", "--eval-episodes", "2",
            "--checkpoint-every", "100", "-o", "protocol.log_every=100", "-o", "batch_size=32", "-o", "hidden=32,32"]
    submitted = bench_cli("run", *args, "--seeds", "4", "--suite", "pk", "--executor", "slurm", "--profile", str(profile),
                          results_dir=results)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    suite = results / "pk"
    entry = submissions(suite)[0]
    array = entry["arrays"][0]
    assert f"submitted 4 run(s) (2 per task: 2 tasks) as array job(s) {array}" in submitted.stdout
    assert entry["tasks"] == {f"{array}_0": [f"sac/Pendulum-v1/seed={s}" for s in (0, 1)],
                              f"{array}_1": [f"sac/Pendulum-v1/seed={s}" for s in (2, 3)]}
    assert entry["profile"]["runs_per_task"] == 2
    signalled = [suite / run for run in entry["tasks"][f"{array}_0"]]
    try:
        wait_until(lambda: all(_checkpoint_step(run) >= 300 for run in signalled), 180, "both runs of task 0 at "
                   "a checkpoint >= 300")
        assert not any((run / "DONE").exists() for run in signalled)
        subprocess.run(["scancel", "--signal=USR2", f"{array}_0"], check=True)
        # Meanwhile, the reference: the same first two runs, unpacked and uninterrupted.
        reference = bench_cli("run", *args, "--seeds", "2", "--suite", "ref", "--workers", "2",
                              "--threads", "1", results_dir=results)
        assert reference.returncode == 0, reference.stdout + reference.stderr
        wait_until(lambda: all((suite / run / "DONE").exists() for runs in entry["tasks"].values() for run in runs),
                   300, "all 4 runs DONE")
    finally:
        cancel(suite)
    for task, runs in entry["tasks"].items():
        for run in runs:
            attempts = json.loads((suite / run / "attempts.json").read_text())
            outcomes = [(a["slurm_job"], a["slurm_restart"], a["outcome"]) for a in attempts]
            summary = json.loads((suite / run / "summary.json").read_text())
            assert summary["total_steps"] == steps and summary["torch_threads"] == 1
            if task.endswith("_1"):
                assert outcomes == [(task, 0, "done")]
                continue
            assert outcomes == [(task, 0, "interrupted"), (task, 1, "done")], run
            assert 0 < attempts[0]["end_step"] == attempts[1]["start_step"] < steps
            assert summary["resumes"] == 1 and summary["updates"] == steps - 100
            unpacked = results / "ref" / run
            for log, names in (("eval.csv", ("step", "eval/return_mean", "eval/return_std")),
                               ("train.csv", ("step", "loss/critic", "loss/actor", "alpha", "updates"))):
                for name in names:
                    assert _column(suite / run / log, name) == _column(unpacked / log, name), (run, log, name)
    log = (Path(entry["logs"]) / f"{array}_0_0_log.err").read_text()
    assert "Caught signal SIGUSR2" in log
    assert yaml.safe_load((suite / "sweep.yaml").read_text())["placement"]["runs_per_task"] == 2


def _column(path: Path, name: str) -> list[str]:
    with open(path) as handle:
        return [row[name] for row in csv.DictReader(handle)]
