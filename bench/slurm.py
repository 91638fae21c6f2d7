"""Sweeps on SLURM through submitit: one job array per sweep (chunked), one array task per run, submit and exit.

    results/<suite>/slurm/
        submissions.jsonl            one line per `bench run --executor slurm`: time, arrays, task id -> run, folders
        <UTC time>-<pid>/code/       the code the submitted tasks import (a copy of bench/, algorithms/ and plugin
                                     modules, with SNAPSHOT.json naming the source commit): editing the checkout
                                     does not change queued or requeued jobs
        <UTC time>-<pid>/logs/       submitit's folder: <array>_<task>_0_log.out / .err, pickles, sbatch script

Success is read from the run directories only; the scheduler is asked (``squeue``) just for the queue state of
runs that have not finished, never through ``sacct`` and never by waiting on jobs.

Requeue: each task is a :class:`RunTask` (a submitit ``Checkpointable``). SLURM sends USR2 ``signal_delay_s``
before the time limit (and on preemption); ``run_one`` catches it, writes a checkpoint and returns; the task then
hands the signal to submitit's own handler, which calls ``checkpoint()`` and requeues the task. The requeued task
runs ``run_one`` again, which resumes from the checkpoint. All state is in the run directory, so the default
``checkpoint()`` (resubmit the same JobSpec) is all a requeue needs.
"""

from __future__ import annotations

import getpass
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import submitit

import algorithms
import bench
from algorithms.config import ConfigError
from bench import records
from bench.profiles import ClusterProfile
from bench.sweep import JobSpec

SLURM_DIR = "slurm"
SUBMISSIONS_FILE = "submissions.jsonl"
PREEMPT_SIGNAL = "SIGUSR2"  # submitit's checkpoint signal (its default SUBMITIT_PREEMPT_SIGNAL)


class RunFailed(RuntimeError):
    """Raised in an array task whose run failed, so that the scheduler shows the task as FAILED too."""


class RunTask(submitit.helpers.Checkpointable):
    """One array task: train (or resume) one run."""

    def __init__(self, raise_on_failure: bool = True) -> None:
        self.raise_on_failure = raise_on_failure

    def __call__(self, job: JobSpec) -> dict[str, Any]:
        from bench.run import run_one  # here, not at import: `bench status` reads the queue without torch

        summary = run_one(job, reporter=_log_event)
        if summary["status"] == "interrupted" and PREEMPT_SIGNAL in summary.get("signals", ()):
            # The checkpoint is written and run_one has put submitit's handler back: let it requeue this task.
            signal.raise_signal(getattr(signal, PREEMPT_SIGNAL))
        if summary["status"] == "failed" and self.raise_on_failure:
            raise RunFailed(f"{job.name} failed: {summary.get('error')} (traceback in {job.run_dir}/error.txt)")
        return summary


def _log_event(event: dict[str, Any]) -> None:
    """Plain lines in the task's log file (<logs>/<array>_<task>_0_log.out)."""
    kind = event["event"]
    if kind == "progress":
        return
    details = {key: value for key, value in event.items() if key not in ("event", "job", "summary")}
    if "summary" in event:
        details["status"] = event["summary"].get("status")
    print(f"{time.strftime('%H:%M:%S')} {kind:10s} {event.get('job', '')} {details}", flush=True)


# Submission ---------------------------------------------------------------------------------------
def submit(jobs: Sequence[JobSpec], profile: ClusterProfile, console: Any) -> int:
    """Submit the runs of ``jobs`` that are not done, running or queued, as arrays; print ids and log paths."""
    suite_dir = Path(jobs[0].run_dir).parents[2]
    queue = queue_states(suite_dir)
    todo, skipped = [], {"done": 0, "running": 0, "queued": 0}
    for job in jobs:
        state = records.run_status(Path(job.run_dir)).state
        task = queue.get(job.name)
        if state == "done":
            skipped["done"] += 1
        elif state == "running":
            skipped["running"] += 1
        elif task is not None:
            skipped["queued"] += 1
        else:
            todo.append(job)
    left_alone = ", ".join(f"{count} {what}" for what, count in skipped.items() if count)
    if not todo:
        console.print(f"nothing to submit: all {len(jobs)} runs are done, running or queued ({left_alone})")
        return 0
    if shutil.which("sbatch") is None:
        raise ConfigError("--executor slurm: sbatch is not on PATH; submit from a cluster login node (or start "
                          "scripts/slurm-local-cluster.sh and export SLURM_CONF)")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{os.getpid()}"
    submission_dir = suite_dir / SLURM_DIR / stamp
    code_dir = snapshot_code(submission_dir / "code", plugins=jobs[0].plugins)
    executor = make_submitit_executor("slurm", submission_dir / "logs", profile, code_dir)
    executor.update_parameters(name=job_name(profile, suite_dir))
    tasks: dict[str, str] = {}
    arrays: list[str] = []
    try:
        for start in range(0, len(todo), profile.max_array_size):
            chunk = todo[start:start + profile.max_array_size]
            submitted = executor.map_array(RunTask(), chunk)
            arrays.append(str(submitted[0].job_id).split("_")[0])
            tasks.update({str(task.job_id): job.name for task, job in zip(submitted, chunk)})
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError, subprocess.SubprocessError,
            OSError) as error:
        if not arrays:
            shutil.rmtree(submission_dir, ignore_errors=True)
            raise ConfigError(f"sbatch refused the submission (check the cluster profile): "
                              f"{str(error).strip()}") from None
        console.print(f"[red]submitting stopped after {len(tasks)} run(s):[/] {error}")
    finally:
        if arrays:  # what was queued is recorded even when a later chunk failed
            record = {"submitted_at": records.now_iso(), "job_name": job_name(profile, suite_dir), "arrays": arrays,
                      "tasks": tasks, "code": str(code_dir), "logs": str(submission_dir / "logs"),
                      "profile": profile_summary(profile)}
            with open(suite_dir / SLURM_DIR / SUBMISSIONS_FILE, "a") as handle:
                handle.write(json.dumps(record) + "\n")
    console.print(f"submitted {len(tasks)} run(s) as array job(s) {', '.join(arrays)}"
                  + (f"; left alone: {left_alone}" if left_alone else ""))
    console.print(f"logs: {submission_dir / 'logs'}/<job id>_0_log.out (and .err); code snapshot: {code_dir}")
    console.print(f"follow with: bench status {suite_dir}")
    return 0 if len(tasks) == len(todo) else 1


def make_submitit_executor(cluster: str, folder: Path, profile: ClusterProfile | None,
                           code_dir: Path | None = None) -> submitit.AutoExecutor:
    if cluster == "debug":
        return submitit.AutoExecutor(folder=folder, cluster="debug")
    assert profile is not None
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=profile.max_num_timeout,
                                     slurm_python=profile.python or sys.executable)
    # The snapshot comes first on the path of every task (and of every requeue), before any checkout: on
    # PYTHONPATH, and as the working directory, because `python -m submitit...` puts the working directory (where
    # `bench run` was typed: often the checkout itself) ahead of PYTHONPATH.
    setup = [*profile.setup, f"cd {shlex.quote(str(code_dir))}",
             f"export PYTHONPATH={shlex.quote(str(code_dir))}${{PYTHONPATH:+:$PYTHONPATH}}",
             f"export OMP_NUM_THREADS={profile.cpus_per_task}"]
    executor.update_parameters(**profile.submitit_parameters(), slurm_setup=setup)
    return executor


def job_name(profile: ClusterProfile, suite_dir: Path) -> str:
    """``<profile job_name>-<suite>``: readable in squeue, and what ties a queue entry to this suite (job ids are
    reused when a cluster's state is reset)."""
    return f"{profile.job_name}-{Path(suite_dir).name}"


def profile_summary(profile: ClusterProfile) -> dict[str, Any]:
    return {key: value for key, value in vars(profile).items() if value not in (None, (), {})}


def snapshot_code(target: Path, plugins: Sequence[str] = ()) -> Path:
    """Copy the harness packages (and plugin modules, which register algorithms) to ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in (bench, algorithms):
        source = Path(package.__file__).resolve().parent
        shutil.copytree(source, target / source.name, ignore=ignore)
    for module in plugins:
        spec = importlib.util.find_spec(module.split(".")[0])
        origin = Path(spec.origin) if spec and spec.origin else None
        if origin is None or origin.parent in (target / "bench", target / "algorithms"):
            continue
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, target / origin.parent.name, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(origin, target / origin.name)
    source_root = Path(bench.__file__).resolve().parent.parent
    info = {"source": str(source_root), "git": records.git_state(source_root / "bench"), "created": records.now_iso()}
    (target / records.SNAPSHOT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return target


# Queue state --------------------------------------------------------------------------------------
def read_submissions(suite_dir: Path) -> list[dict[str, Any]]:
    path = Path(suite_dir) / SLURM_DIR / SUBMISSIONS_FILE
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a crash while appending
    return entries


def latest_tasks(suite_dir: Path) -> dict[str, tuple[str, str]]:
    """Run name -> (array task id, job name) of the submission that last ran or will run it."""
    latest: dict[str, tuple[str, str]] = {}
    for entry in read_submissions(suite_dir):
        for task_id, run in entry.get("tasks", {}).items():
            latest[run] = (task_id, entry.get("job_name", ""))
    return latest


def queue_states(suite_dir: Path) -> dict[str, str]:
    """Run name -> "<task id> <STATE> (<reason>)" for runs whose latest task is still in the SLURM queue
    (pending, running, requeued, completing). Empty when nothing was submitted or squeue is not available."""
    latest = latest_tasks(suite_dir)
    if not latest:
        return {}
    in_queue = squeue()
    return {run: f"{task} {in_queue[task][1]}" for run, (task, name) in latest.items()
            if task in in_queue and in_queue[task][0] == name}


def squeue() -> dict[str, tuple[str, str]]:
    """Task id ("12_3", or "12" for a plain job) -> (job name, "STATE (reason)") for this user's jobs in the
    queue; one call, array tasks listed one per line (-r). {} if squeue is missing or fails."""
    if shutil.which("squeue") is None:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%j|%T|%r"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    if out.returncode != 0:
        return {}
    states = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            task, name, state, reason = parts
            states[task] = (name, state if reason in ("None", "") else f"{state} ({reason})")
    return states
