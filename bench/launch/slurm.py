"""Sweeps on SLURM through submitit: one job array per sweep (chunked), one array task per run (or per
``runs_per_task`` runs, packed: :class:`PackedRunTask`), submit and exit.

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
``checkpoint()`` (resubmit the same JobSpec) is all a requeue needs. A packed task (:class:`PackedRunTask`) does
the same for its K runs at once: the local pool forwards the signal to each run's process, every run checkpoints,
and the task requeues itself with the same K JobSpecs.
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
from typing import Any, Collection, Sequence

from dataclasses import dataclass, field, replace

import submitit

import algorithms
import bench
from algorithms.config import ConfigError
from bench.jobs import JobSpec, Outcome, RunDir, RunState, SuiteDir, now_iso
from bench.launch.packing import pack, task_devices
from bench.launch.profiles import ClusterProfile
from bench.records.manifest import SNAPSHOT_INFO, git_state
from bench.records.state import run_status

SUBMISSIONS_FILE = "submissions.jsonl"
PREEMPT_SIGNAL = "SIGUSR2"  # submitit's checkpoint signal (its default SUBMITIT_PREEMPT_SIGNAL)


class RunFailed(RuntimeError):
    """Raised in an array task whose run failed, so that the scheduler shows the task as FAILED too."""


class RunTask(submitit.helpers.Checkpointable):
    """One array task: train (or resume) one run."""

    def __init__(self, raise_on_failure: bool = True) -> None:
        self.raise_on_failure = raise_on_failure

    def __call__(self, job: JobSpec) -> dict[str, Any]:
        from bench.train.run import run_one  # here, not at import: `bench status` reads the queue without torch

        summary = run_one(job, on_event=_log_event)
        if summary["status"] == Outcome.INTERRUPTED and PREEMPT_SIGNAL in summary.get("signals", ()):
            # The checkpoint is written and run_one has put submitit's handler back: let it requeue this task.
            signal.raise_signal(getattr(signal, PREEMPT_SIGNAL))
        if summary["status"] == Outcome.FAILED and self.raise_on_failure:
            raise RunFailed(f"{job.name} failed: {summary.get('error')} (traceback in {job.directory.error_file})")
        return summary


class PackedRunTask(submitit.helpers.Checkpointable):
    """One array task holding several runs (the profile's ``runs_per_task``): each in its own spawned process (the
    local pool's), so that one run dying takes none of its siblings with it; a stop signal to the task reaches
    every run, each checkpoints, and on USR2 the task requeues itself with all its runs (the finished ones are
    skipped when it comes back)."""

    def __init__(self, gpus: int = 0, raise_on_failure: bool = True) -> None:
        self.gpus, self.raise_on_failure = gpus, raise_on_failure

    def __call__(self, jobs: Sequence[JobSpec]) -> list[dict[str, Any]]:
        from bench.launch.local_pool import run_local  # imports torch: only in the task, never at submission

        received: list[str] = []
        summaries = run_local(task_devices(jobs, self.gpus), len(jobs), _log_event, received)
        interrupted = any(summary["status"] == Outcome.INTERRUPTED for summary in summaries)
        if interrupted and PREEMPT_SIGNAL in received:
            # Every run has checkpointed and the pool has put submitit's handler back: let it requeue the task.
            signal.raise_signal(getattr(signal, PREEMPT_SIGNAL))
        failed = [job.name for job, summary in zip(jobs, summaries) if summary["status"] == Outcome.FAILED]
        if failed and self.raise_on_failure:
            raise RunFailed(f"{len(failed)} of the task's {len(jobs)} runs failed: {', '.join(failed)} "
                            f"(tracebacks in <run dir>/{RunDir.ERROR})")
        return summaries


def _log_event(event: dict[str, Any]) -> None:
    """Plain lines in the task's log file (<logs>/<array>_<task>_0_log.out), worded as `bench run` words them."""
    from rich.text import Text

    from bench.launch.progress import event_line

    line = event_line(event, verbose=True)
    if line is not None:
        print(f"{time.strftime('%H:%M:%S')} {Text.from_markup(line).plain}", flush=True)


# Submission ---------------------------------------------------------------------------------------
def submit(jobs: Sequence[JobSpec], profile: ClusterProfile, console: Any) -> int:
    """Submit the runs of ``jobs`` that are not done, running or queued, as arrays; print ids and log paths."""
    suite = jobs[0].directory.suite_dir
    queue = queue_states(suite)
    not_started = {job.name for job in jobs if run_status(job.directory).state == RunState.NOT_STARTED}
    failures = start_failures(suite, profile, not_started)
    todo, skipped, refused = [], {"done": 0, "running": 0, "queued": 0, "failed to start": 0}, []
    for job in jobs:
        state = run_status(job.directory).state
        if state == RunState.DONE:
            skipped["done"] += 1
        elif state == RunState.RUNNING:
            skipped["running"] += 1
        elif job.name in queue:
            skipped["queued"] += 1
        elif state == RunState.NOT_STARTED and failures.get(job.name, NO_FAILURE).count >= profile.max_start_failures:
            skipped["failed to start"] += 1
            refused.append((job, failures[job.name]))
        else:
            todo.append(job)
    for job, failure in refused:
        console.print(f"[red]not resubmitted:[/] {job.name}: its task failed to start {failure.count} time(s) "
                      f"under this profile (max_start_failures: {profile.max_start_failures}); log {failure.log}: "
                      f"{failure.first_line}. Fix the cause (a changed profile counts again from 0)",
                      highlight=False, soft_wrap=True)
    left_alone = ", ".join(f"{count} {what}" for what, count in skipped.items() if count)
    if not todo:
        states = "done, running, queued or failed to start" if refused else "done, running or queued"
        console.print(f"nothing to submit: all {len(jobs)} runs are {states} ({left_alone})")
        return 1 if refused else 0
    submission, tasks = _submit_runs(todo, suite, profile)
    _record_submission(suite, submission, tasks, profile)
    submitted = sum(len(runs) if isinstance(runs, list) else 1 for runs in tasks.values())
    if submission.error:
        console.print(f"[red]submitting stopped after {submitted} run(s):[/] {submission.error}")
    packed = f" ({profile.runs_per_task} per task: {len(tasks)} tasks)" if profile.runs_per_task > 1 else ""
    console.print(f"submitted {submitted} run(s){packed} as array job(s) {', '.join(submission.arrays)}"
                  + (f"; left alone: {left_alone}" if left_alone else ""))
    console.print(f"logs: {submission.logs}/<job id>_0_log.out (and .err); code snapshot: {submission.code_dir}")
    console.print(f"follow with: bench status {suite.path}")
    return 0 if submitted == len(todo) and not refused else 1


def _submit_runs(todo: Sequence[JobSpec], suite: SuiteDir,
                 profile: ClusterProfile) -> tuple["Submission", dict[str, str | list[str]]]:
    """The runs as array tasks, one run each or ``runs_per_task`` each; task id -> its run (or list of runs)."""
    if profile.runs_per_task == 1:
        submission = submit_array(RunTask(), [(job,) for job in todo], suite.path, profile, todo[0].plugins)
        return submission, {task_id: job.name for task_id, job in zip(submission.task_ids, todo)}
    groups = pack(todo, profile.runs_per_task)
    submission = submit_array(PackedRunTask(profile.gpus_per_node), [(group,) for group in groups], suite.path,
                              profile, todo[0].plugins)
    return submission, {task_id: [job.name for job in group] for task_id, group in zip(submission.task_ids, groups)}


@dataclass
class Submission:
    folder: Path                  # <home>/slurm/<UTC time>-<pid>/
    code_dir: Path                # the code snapshot the tasks import
    job_name: str
    arrays: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)  # one per submitted argument tuple, in order
    error: str | None = None      # why a later chunk was not submitted

    @property
    def logs(self) -> Path:
        return self.folder / "logs"


def submit_array(task: Any, arguments: Sequence[tuple], home: Path, profile: ClusterProfile,
                 plugins: Sequence[str]) -> Submission:
    """The one SLURM submission path (`bench run` and `bench tune`): ``task(*arguments[i])`` as array tasks, in
    chunks of the profile's ``max_array_size``, from a fresh code snapshot under ``<home>/slurm/``. Raises
    ConfigError when nothing could be submitted (and leaves nothing behind)."""
    if shutil.which("sbatch") is None:
        raise ConfigError("--executor slurm: sbatch is not on PATH; submit from a cluster login node (or start "
                          "scripts/slurm-local-cluster.sh and export SLURM_CONF)")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{os.getpid()}"
    folder = Path(home) / SuiteDir.SLURM_FOLDER / stamp
    submission = Submission(folder, snapshot_code(folder / "code", plugins=plugins), job_name(profile, Path(home)))
    executor = make_submitit_executor("slurm", submission.logs, profile, submission.code_dir)
    executor.update_parameters(name=submission.job_name)
    try:
        for start in range(0, len(arguments), profile.max_array_size):
            chunk = arguments[start:start + profile.max_array_size]
            submitted = executor.map_array(task, *zip(*chunk))
            submission.arrays.append(str(submitted[0].job_id).split("_")[0])
            submission.task_ids += [str(job.job_id) for job in submitted]
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError, subprocess.SubprocessError,
            OSError) as error:
        if not submission.arrays:
            shutil.rmtree(folder, ignore_errors=True)
            raise ConfigError(f"sbatch refused the submission (check the cluster profile): "
                              f"{str(error).strip()}") from None
        submission.error = str(error)
    return submission


def _record_submission(suite: SuiteDir, submission: Submission, tasks: dict[str, str | list[str]],
                       profile: ClusterProfile) -> None:
    """A line of ``submissions.jsonl``: which array task runs which run, or which runs when they are packed
    (read by `bench status`)."""
    record = {"submitted_at": now_iso(), "job_name": submission.job_name, "arrays": submission.arrays,
              "tasks": tasks, "code": str(submission.code_dir), "logs": str(submission.logs),
              "profile": profile_summary(profile)}
    with open(suite.slurm_dir / SUBMISSIONS_FILE, "a") as handle:
        handle.write(json.dumps(record) + "\n")


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
             f"export OMP_NUM_THREADS={profile.threads_per_run}"]
    executor.update_parameters(**profile.submitit_parameters(), slurm_setup=setup)
    return executor


def job_name(profile: ClusterProfile, home: Path) -> str:
    """``<profile job_name>-<suite>``: readable in squeue, and what ties a queue entry to this suite (job ids are
    reused when a cluster's state is reset)."""
    return f"{profile.job_name}-{Path(home).name}"


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
    info = {"source": str(source_root), "git": git_state(source_root / "bench"), "created": now_iso()}
    (target / SNAPSHOT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return target


# Queue state --------------------------------------------------------------------------------------
def read_submissions(suite: SuiteDir) -> list[dict[str, Any]]:
    path = suite.slurm_dir / SUBMISSIONS_FILE
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a crash while appending
    return entries


def latest_tasks(suite: SuiteDir) -> dict[str, tuple[str, str]]:
    """Run name -> (array task id, job name) of the submission that last ran or will run it."""
    latest: dict[str, tuple[str, str]] = {}
    for entry in read_submissions(suite):
        for task_id, run in _task_runs(entry):
            latest[run] = (task_id, entry.get("job_name", ""))
    return latest


def queue_states(suite: SuiteDir) -> dict[str, str]:
    """Run name -> "<task id> <STATE> (<reason>)" for runs whose latest task is still in the SLURM queue
    (pending, running, requeued, completing). Empty when nothing was submitted or squeue is not available."""
    latest = latest_tasks(suite)
    if not latest:
        return {}
    in_queue = squeue()
    return {run: f"{task} {in_queue[task][1]}" for run, (task, name) in latest.items()
            if task in in_queue and in_queue[task][0] == name}


# Tasks that never started ----------------------------------------------------------------------------
@dataclass(frozen=True)
class StartFailure:
    """The latest task of a run left the queue without the run ever starting (a wrong `python:` or `setup:` in the
    profile, a missing module on the nodes): its log, its first lines, and how many submissions in a row under the
    current profile ended so."""

    task: str
    log: Path
    head: tuple[str, ...]
    count: int

    @property
    def first_line(self) -> str:
        return self.head[0] if self.head else "(empty log)"


NO_FAILURE = StartFailure("", Path(), (), 0)
LOG_HEAD_LINES = 3


def start_failures(suite: SuiteDir, profile: ClusterProfile | None = None,
                   runs: Collection[str] | None = None) -> dict[str, StartFailure]:
    """Run name -> its start failure, for runs whose latest task ran (it has a log), left the queue and never
    started the run (no line of it in the task's output). ``count`` is the number of such submissions in a row,
    newest first, under ``profile`` (any profile when None). Only ``runs`` are looked at when given (their logs
    are read: pass the runs not started). {} when squeue cannot be asked: a task still starting would look the
    same."""
    if shutil.which("squeue") is None or (runs is not None and not runs):
        return {}
    entries = read_submissions(suite)
    if not entries:
        return {}
    queued = squeue()
    current = _plain_json(profile_summary(profile)) if profile is not None else None
    failures: dict[str, StartFailure] = {}
    counting: dict[str, bool] = {}
    for entry in reversed(entries):
        same_profile = current is None or entry.get("profile") == current
        for task, run in _task_runs(entry):
            if not counting.get(run, True) or (runs is not None and run not in runs):
                continue
            logs = Path(entry.get("logs", ""))
            if task in queued or not _never_started(logs, task, run):
                counting[run] = False
                continue
            previous = failures.get(run) or StartFailure(task, _task_log(logs, task, "err"), _log_head(logs, task), 0)
            failures[run] = replace(previous, count=previous.count + (1 if same_profile else 0))
    return failures


def _task_runs(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """(task id, run name) pairs of a submission; a packed task (runs_per_task > 1) holds a list of runs."""
    return [(task, run) for task, held in entry.get("tasks", {}).items()
            for run in (held if isinstance(held, list) else [held])]


def _never_started(logs: Path, task: str, run: str) -> bool:
    """The task ran (it has a log) and never reached the run (no line of it in its output). A task without a log
    never ran at all (cancelled while pending, logs removed): not a start failure."""
    out, err = _task_log(logs, task, "out"), _task_log(logs, task, "err")
    if not (out.exists() or err.exists()):
        return False
    return not (out.exists() and run in out.read_text(errors="replace"))


def _task_log(logs: Path, task: str, kind: str) -> Path:
    return logs / f"{task}_0_log.{kind}"


def _log_head(logs: Path, task: str) -> tuple[str, ...]:
    """The first non-empty lines of the task's stderr (else stdout): where a start failure says why."""
    for kind in ("err", "out"):
        path = _task_log(logs, task, kind)
        if path.exists():
            lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
            if lines:
                return tuple(lines[:LOG_HEAD_LINES])
    return ()


def _plain_json(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))


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
