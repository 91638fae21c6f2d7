"""One dying worker fails only its own run (resumably) and the sweep runs to the end; a killed `bench run` takes
its workers with it. Through the real CLI, with real SIGKILLs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch

from bench.jobs import RunDir
from bench.records.state import run_status
from tests.helpers import TINY, bench_cli, bench_env

STEPS = 400
SWEEP = ["--algos", "sac", "--envs", "Pendulum", *TINY, "--steps", str(STEPS), "--checkpoint-every", "100"]


def seed_dir(results: Path, suite: str, seed: int) -> Path:
    return results / suite / "sac" / "Pendulum-v1" / f"seed={seed}"


def start_sweep(results: Path, suite: str, seeds: int, workers: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "bench.cli", "run", *SWEEP, "--seeds", str(seeds), "--workers", str(workers),
               "--suite", suite]
    return subprocess.Popen(command, env=bench_env(results), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def wait_for(condition, timeout: float = 240, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


def worker_pid(directory: Path) -> int:
    """The pid in the run's RUNNING lock: the worker process training it."""
    return json.loads((directory / "RUNNING").read_text())["pid"]


def has_checkpoint(directory: Path) -> bool:
    return (RunDir(directory).checkpoint_step() or 0) > 0 and (directory / "RUNNING").exists()


def final_agent(directory: Path) -> dict:
    return torch.load(directory / "ckpt" / "last.pt", map_location="cpu", weights_only=False)["agent"]


def assert_same_tensors(left, right) -> None:
    if isinstance(left, torch.Tensor):
        assert torch.equal(left, right)
    elif isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            assert_same_tensors(left[key], right[key])
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right)
        for a, b in zip(left, right):
            assert_same_tensors(a, b)
    else:
        assert left == right


def test_a_killed_worker_fails_only_its_run_and_the_rerun_finishes_it_bit_identically(results_dir):
    sweep = start_sweep(results_dir, "iso", seeds=4, workers=2)
    victim = seed_dir(results_dir, "iso", 0)
    wait_for(lambda: has_checkpoint(victim), what="a checkpoint of seed=0")
    os.kill(worker_pid(victim), signal.SIGKILL)  # what the OOM killer does to one worker
    output, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 1, output
    assert "BrokenProcessPool" not in output and "Traceback" not in output
    assert "sac/Pendulum-v1/seed=0: worker process died: killed (signal 9; out of memory?)" in output
    for seed in (1, 2, 3):
        assert (seed_dir(results_dir, "iso", seed) / "DONE").exists(), output
    assert not (victim / "DONE").exists() and not (victim / "RUNNING").exists()
    status = run_status(victim)
    assert status.state == "failed" and "killed (signal 9; out of memory?)" in status.detail
    attempt = json.loads((victim / "attempts.json").read_text())[-1]
    assert attempt["outcome"] == "killed" and attempt["cause"] == "killed (signal 9; out of memory?)"
    assert "worker process died" in (victim / "run.log").read_text()

    rerun = bench_cli("run", *SWEEP, "--seeds", "4", "--workers", "2", "--suite", "iso", results_dir=results_dir)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resumed at step" in rerun.stdout and (victim / "DONE").exists()
    assert [a["outcome"] for a in json.loads((victim / "attempts.json").read_text())] == ["killed", "done"]
    reference = bench_cli("run", *SWEEP, "--seeds", "1", "--workers", "1", "--suite", "ref", results_dir=results_dir)
    assert reference.returncode == 0, reference.stdout + reference.stderr
    untouched = seed_dir(results_dir, "ref", 0)
    assert len(eval_returns(victim)) == STEPS // 100 + 1
    assert eval_returns(victim) == eval_returns(untouched)
    assert_same_tensors(final_agent(victim), final_agent(untouched))


def eval_returns(directory: Path) -> list[str]:
    rows = (directory / "eval.csv").read_text().splitlines()[1:]
    return [",".join(row.split(",")[:1] + row.split(",")[2:]) for row in rows]  # all but wall_time_s


def test_killing_the_launcher_stops_its_workers_and_helpers_within_seconds(results_dir):
    sweep = start_sweep(results_dir, "orphan", seeds=2, workers=2)
    wait_for(lambda: all(has_checkpoint(seed_dir(results_dir, "orphan", s)) for s in (0, 1)),
             what="checkpoints of both runs")
    launcher = psutil.Process(sweep.pid)
    family = launcher.children(recursive=True)
    assert len(family) >= 2  # the two workers (and multiprocessing's resource tracker)
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.communicate(timeout=60)
    killed_at = time.time()
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
    assert time.time() - killed_at < 15
    for seed in (0, 1):  # each orphan checkpointed and stopped: resumable, not failed
        directory = seed_dir(results_dir, "orphan", seed)
        assert run_status(directory).state == "interrupted"
        assert json.loads((directory / "attempts.json").read_text())[-1]["outcome"] == "interrupted"


def test_the_cause_of_a_workers_death_in_words():
    from bench.launch.local_pool import describe_exit

    assert describe_exit(-signal.SIGKILL) == "killed (signal 9; out of memory?)"
    assert describe_exit(-signal.SIGSEGV) == "killed (signal 11, SIGSEGV)"
    assert describe_exit(3) == "exited with code 3 without recording a result"
