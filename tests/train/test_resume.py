"""Runs survive SIGKILL, SIGTERM and corrupted files, and a resumed run is bit-identical to an uninterrupted one."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.jobs import RunDir
from bench.records.state import run_status
from bench.train import checkpoint
from bench.train.run import INTERRUPTED_EXIT_CODE, run_one
from tests.helpers import plan_jobs as expand
from tests.helpers import bench_cli, bench_env

# Hopper (a real MuJoCo task, mid-episode state matters) with small networks; checkpoints every 300 steps.
STEPS, EVAL_EVERY, CKPT_EVERY = 2400, 300, 300
ARGS = ["--algos", "sac", "--envs", "Hopper", "--seeds", "1", "--protocol", "quick", "--steps", str(STEPS),
        "--warmup", "300", "--eval-every", str(EVAL_EVERY), "--eval-episodes", "2", "--checkpoint-every",
        str(CKPT_EVERY), "--threads", "1", "--workers", "1", "-o", "hidden=32,32", "-o", "batch_size=32",
        "-o", "protocol.log_every=100"]
SCHEDULE = list(range(0, STEPS + 1, EVAL_EVERY))


def run_dir(results: Path, suite: str) -> Path:
    return results / suite / "sac" / "Hopper-v5" / "seed=0"


def column(path: Path, name: str) -> list[str]:
    with open(path) as handle:
        return [row[name] for row in csv.DictReader(handle)]


def start_background(results: Path, suite: str) -> subprocess.Popen:
    env = bench_env(results)
    return subprocess.Popen([sys.executable, "-m", "bench.cli", "run", *ARGS, "--suite", suite], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def wait_for_checkpoint(directory: Path, after_step: int, timeout: float = 120) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        step = RunDir(directory).checkpoint_step()
        if step is not None and step > after_step:
            return step
        time.sleep(0.05)
    raise TimeoutError(f"no checkpoint past step {after_step} in {directory}")


def kill_group(process: subprocess.Popen, sig: int) -> None:
    os.killpg(process.pid, sig)
    process.wait(timeout=120)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    results = tmp_path_factory.mktemp("ref") / "results"
    result = bench_cli("run", *ARGS, "--suite", "ref", results_dir=results)
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir(results, "ref")


def test_sigkill_at_random_moments_then_resume_completes_without_gaps_or_duplicates(tmp_path, uninterrupted):
    results = tmp_path / "results"
    directory = run_dir(results, "killed")
    moments = random.Random(20261122)
    kills, last_checkpoint = 0, 0
    while last_checkpoint < STEPS - 2 * CKPT_EVERY and kills < 3:
        on_disk = RunDir(directory).checkpoint_step() or 0
        process = start_background(results, "killed")
        last_checkpoint = wait_for_checkpoint(directory, on_disk)  # a checkpoint of this attempt
        time.sleep(moments.uniform(0.0, 1.5))  # somewhere between two checkpoints, mid-write or not
        kill_group(process, signal.SIGKILL)
        assert not (directory / "DONE").exists()
        kills += 1
    final = bench_cli("run", *ARGS, "--suite", "killed", results_dir=results)
    assert final.returncode == 0, final.stdout + final.stderr
    assert (directory / "DONE").exists()
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["total_steps"] == STEPS and summary["resumes"] == kills >= 2
    assert [int(s) for s in column(directory / "eval.csv", "step")] == SCHEDULE
    train_steps = [int(s) for s in column(directory / "train.csv", "step")]
    assert train_steps == list(range(100, STEPS + 1, 100))
    attempts = json.loads((directory / "attempts.json").read_text())
    assert [a["outcome"] for a in attempts] == ["killed"] * kills + ["done"]
    assert summary["wall_time_s"] >= sum(a["last_alive"] - a["started"] for a in attempts[:-1])
    # State exactness: the same evaluation returns and losses as the run that was never interrupted.
    for name in ("eval/return_mean", "eval/return_std"):
        assert column(directory / "eval.csv", name) == column(uninterrupted / "eval.csv", name)
    for name in ("loss/critic", "loss/actor", "alpha", "train/episode_return", "updates"):
        assert column(directory / "train.csv", name) == column(uninterrupted / "train.csv", name)


def test_sigterm_checkpoints_and_exits_with_the_requeue_status(tmp_path, uninterrupted):
    results = tmp_path / "results"
    directory = run_dir(results, "term")
    process = start_background(results, "term")
    wait_for_checkpoint(directory, 0)
    os.kill(process.pid, signal.SIGTERM)  # the launcher only: it must pass the signal on to its worker
    assert process.wait(timeout=120) == INTERRUPTED_EXIT_CODE
    step = RunDir(directory).checkpoint_step()
    assert step is not None and step < STEPS
    assert run_status(directory).state == "interrupted"
    assert json.loads((directory / "attempts.json").read_text())[-1]["outcome"] == "interrupted"
    resumed = bench_cli("run", *ARGS, "--suite", "term", results_dir=results)
    assert resumed.returncode == 0 and f"resumed at step {step}" in resumed.stdout
    assert column(directory / "eval.csv", "eval/return_mean") == column(uninterrupted / "eval.csv", "eval/return_mean")


def test_changed_config_refuses_to_resume_and_overwrite_starts_over(tmp_path):
    results = tmp_path / "results"
    tiny = [*ARGS[:ARGS.index("--steps")], "--steps", "600", *ARGS[ARGS.index("--steps") + 2:]]
    assert bench_cli("run", *tiny, "--suite", "c", results_dir=results).returncode == 0
    directory = run_dir(results, "c")
    before = (directory / "DONE").stat().st_mtime_ns
    refused = bench_cli("run", *tiny, "--suite", "c", "-o", "tau=0.01", results_dir=results)
    assert refused.returncode == 2
    message = " ".join(refused.stderr.split())
    assert "agent.tau: on disk 0.005, requested 0.01" in message and "--overwrite" in message
    assert (directory / "DONE").stat().st_mtime_ns == before
    overwritten = bench_cli("run", *tiny, "--suite", "c", "-o", "tau=0.01", "--overwrite", results_dir=results)
    assert overwritten.returncode == 0
    assert "tau: 0.01" in (directory / "config.yaml").read_text()


# In-process tests of the fallbacks -----------------------------------------------------------------------
def interrupted_run(tmp_path: Path, stop_at_checkpoint: int = 2):
    """Run in this process and deliver a real SIGTERM after the n-th checkpoint: the run stops there."""
    job = expand(["sac"], ["Hopper"], [0], suite="x", protocol="quick", results_root=tmp_path,
                 protocol_overrides={"total_steps": 1200, "warmup_steps": 200, "eval_every": 200,
                                     "eval_episodes": 1, "log_every": 100},
                 overrides=["hidden=32,32", "batch_size=32"], checkpoint_every=200)[0]
    seen = []

    def reporter(event):
        if event["event"] == "checkpoint":
            seen.append(event["step"])
            if len(seen) == stop_at_checkpoint:
                os.kill(os.getpid(), signal.SIGTERM)

    summary = run_one(job, reporter)
    assert summary["status"] == "interrupted"
    return job, Path(job.run_dir)


def test_half_written_rows_and_rows_past_the_checkpoint_are_dropped(tmp_path):
    job, directory = interrupted_run(tmp_path)
    step = RunDir(directory).checkpoint_step()
    with open(directory / "eval.csv", "a") as handle:
        handle.write(f"{step + 200},1.0,2.0,0.0,2.0,2.0,10.0,1\n{step + 400},1.5,-3")  # a row past it + a torn line
    with open(directory / "train.csv", "a") as handle:
        handle.write("99999,1.0,")
    summary = run_one(job)
    assert summary["status"] == "done"
    assert [int(s) for s in column(directory / "eval.csv", "step")] == list(range(0, 1201, 200))
    log = (directory / "run.log").read_text()
    assert "eval.csv: dropped 1 malformed row(s)" in log and "eval.csv: dropped 1 row(s) past the checkpoint" in log
    assert "train.csv: dropped 1 malformed row(s)" in log


def test_unreadable_checkpoint_falls_back_to_the_previous_one(tmp_path):
    job, directory = interrupted_run(tmp_path, stop_at_checkpoint=3)
    prev_step = torch.load(directory / "ckpt" / "prev.pt", weights_only=False)["step"]
    (directory / "ckpt" / "last.pt").write_bytes(b"\x00garbage, as after a disk error")
    events = []
    summary = run_one(job, events.append)
    assert summary["status"] == "done" and summary["resumes"] == 1
    notices = [e["message"] for e in events if e["event"] == "notice"]
    assert any("last.pt is unreadable" in n for n in notices)
    assert any(f"resuming from prev.pt at env step {prev_step}" in n for n in notices)
    assert [int(s) for s in column(directory / "eval.csv", "step")] == list(range(0, 1201, 200))


def test_no_readable_checkpoint_restarts_from_scratch_and_says_so(tmp_path):
    job, directory = interrupted_run(tmp_path)
    for name in ("last.pt", "prev.pt"):
        (directory / "ckpt" / name).write_bytes(b"truncated")
    events = []
    summary = run_one(job, events.append)
    assert summary["status"] == "done" and summary["resumes"] == 0
    assert any("starting over from step 0" in e.get("message", "") for e in events)
    assert [int(s) for s in column(directory / "eval.csv", "step")] == list(range(0, 1201, 200))


def test_a_signal_without_checkpointing_writes_no_checkpoint_and_the_rerun_starts_over(tmp_path):
    """With --checkpoint-every 0 the replay rows exist only in memory: a checkpoint taken at the signal would
    restore the fill pointer over zeroed rows. No checkpoint is written; the re-run starts over, exactly."""
    def job_in(root):
        return expand(["sac"], ["Hopper"], [0], suite="x", protocol="quick", results_root=root,
                      protocol_overrides={"total_steps": 800, "warmup_steps": 200, "eval_every": 200,
                                          "eval_episodes": 1, "log_every": 100},
                      overrides=["hidden=32,32", "batch_size=32"], checkpoint_every=0)[0]

    def stop_at_step_400(event):
        if event["event"] == "eval" and event["step"] == 400:
            os.kill(os.getpid(), signal.SIGTERM)

    job = job_in(tmp_path / "a")
    assert run_one(job, stop_at_step_400)["status"] == "interrupted"
    directory = Path(job.run_dir)
    assert not (directory / "ckpt" / "last.pt").exists()
    assert run_status(directory).state == "interrupted"
    events = []
    assert run_one(job, events.append)["status"] == "done"
    assert any("starting over from step 0" in event.get("message", "") for event in events)
    reference = job_in(tmp_path / "b")
    run_one(reference, lambda event: None)
    returns = column(directory / "eval.csv", "eval/return_mean")
    assert len(returns) == 5 and returns == column(Path(reference.run_dir) / "eval.csv", "eval/return_mean")


def test_checkpoint_write_is_atomic_and_keeps_one_generation(tmp_path):
    checkpoint.save(tmp_path, {"step": 1, "payload": torch.zeros(3)})
    checkpoint.save(tmp_path, {"step": 2, "payload": torch.ones(3)})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["last.pt", "prev.pt"]
    loaded = checkpoint.load(tmp_path)
    assert loaded.state["step"] == 2 and loaded.source.name == "last.pt" and not loaded.notices
    assert RunDir(tmp_path).checkpoint_step() == 2


def test_default_interval_loses_at_most_five_percent():
    assert checkpoint.default_interval(1_000_000, 5) == 50_000
    assert checkpoint.default_interval(2_400, 1) == 120
    assert checkpoint.default_interval(1_003, 5) % 5 == 0


def test_status_reports_each_state(tmp_path):
    job, interrupted = interrupted_run(tmp_path)
    failed = interrupted.parent / "seed=1"
    failed.mkdir()
    (failed / "config.yaml").write_text("algo: sac\n")
    (failed / "error.txt").write_text("Traceback ...\nRuntimeError: out of luck\n")
    result = bench_cli("status", str(tmp_path / "x"), "--results-dir", str(tmp_path), results_dir=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert f"interrupted │ checkpoint at step {RunDir(interrupted).checkpoint_step()}" in text
    assert "failed │ RuntimeError: out of luck" in text
    grid = bench_cli("status", "--algos", "sac", "--envs", "Hopper", "--seeds", "3", "--suite", "x", "--preset", "none",
                     "--results-dir", str(tmp_path), results_dir=tmp_path)
    assert grid.stdout.count("not started") == 2  # seed=2 row and the totals header


def test_a_run_held_by_a_live_process_is_left_alone_and_a_stale_lock_is_taken_over(tmp_path):
    job = expand(["sac"], ["Pendulum"], [0], suite="lock", protocol="quick", results_root=tmp_path,
                 protocol_overrides={"total_steps": 200, "warmup_steps": 100, "eval_every": 100,
                                     "eval_episodes": 1, "log_every": 100}, overrides=["hidden=16"])[0]
    directory = Path(job.run_dir)
    directory.mkdir(parents=True)
    (directory / "RUNNING").write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid()}))
    assert run_one(job)["status"] == "busy"
    assert run_status(directory).state == "running" and not (directory / "config.yaml").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (directory / "RUNNING").write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout)}))
    assert run_one(job)["status"] == "done"
    assert not (directory / "RUNNING").exists()
