"""Where runs execute. One interface, three executors; everything else reads the run directories.

    executor.launch(jobs, console) -> exit status

``local`` (:class:`LocalExecutor`): a process pool on this machine (:mod:`bench.launch.local_pool`); blocks with
live progress. A crash in one run cannot poison another: each run has its own process, and a process that dies
fails only the run it held.

``slurm`` (:class:`SubmititExecutor`): submits the runs as SLURM job arrays through submitit and returns at once
(:mod:`bench.launch.slurm`). ``debug``: submitit's in-process executor running the same task as a SLURM array task
does, one run after the other, for stepping through with a debugger.
"""

from __future__ import annotations

import typing
from typing import Any, Sequence

from rich.console import Console

from bench.jobs import JobSpec, Outcome, RunDir, RunState, SuiteDir
from bench.launch.local_pool import run_local
from bench.launch.packing import pack
from bench.launch.profiles import ClusterProfile
from bench.records.state import run_status
from bench.train.run import INTERRUPTED_EXIT_CODE, finished_summary


class Executor(typing.Protocol):
    def launch(self, jobs: Sequence[JobSpec], console: Console) -> int:
        """Run (or submit) ``jobs``; DONE runs are skipped. Returns the command's exit status."""


def make_executor(name: str, workers: int = 1, profile: ClusterProfile | None = None,
                  verbose: bool = False, runs_per_task: int = 1) -> Executor:
    if name == "local":
        return LocalExecutor(workers, verbose)
    if name in ("slurm", "debug"):
        return SubmititExecutor(name, profile, runs_per_task)
    raise ValueError(f"unknown executor {name!r}")


class LocalExecutor:
    def __init__(self, workers: int, verbose: bool = False) -> None:
        self.workers, self.verbose = workers, verbose

    def launch(self, jobs: Sequence[JobSpec], console: Console) -> int:
        from bench.launch.progress import SweepProgress

        workers, todo = min(self.workers, len(jobs)), _count_todo(jobs)
        console.print(f"{len(jobs)} runs ({todo} to do, {len(jobs) - todo} already done) with {workers} workers; "
                      f"results in {_suite_root(jobs)}")
        with SweepProgress(len(jobs), jobs[0].protocol["total_steps"], console, self.verbose) as progress:
            # Finished runs are answered from their directories: no worker (nor torch in it) starts for them, so
            # re-running a finished sweep costs what planning it costs.
            finished = {job.name: finished_summary(job, progress.handle) for job in jobs}
            todo_jobs = [job for job in jobs if finished[job.name] is None]
            ran = iter(run_local(todo_jobs, min(workers, max(1, len(todo_jobs))), progress.handle))
            results = [finished[job.name] or next(ran) for job in jobs]
        return print_sweep_end(jobs, results, console)


class SubmititExecutor:
    def __init__(self, cluster: str, profile: ClusterProfile | None, runs_per_task: int = 1) -> None:
        if cluster == "slurm" and profile is None:
            raise ValueError("the slurm executor needs a cluster profile")
        self.cluster, self.profile = cluster, profile
        self.runs_per_task = profile.runs_per_task if profile is not None else runs_per_task

    def launch(self, jobs: Sequence[JobSpec], console: Console) -> int:
        from bench.launch import slurm

        if self.cluster == "slurm":
            assert self.profile is not None
            return slurm.submit(jobs, self.profile, console)
        where = ("in this process" if self.runs_per_task == 1
                 else f"{self.runs_per_task} at a time, each in its own process")
        console.print(f"{len(jobs)} runs ({_count_todo(jobs)} to do) {where} (submitit debug executor); "
                      f"results in {_suite_root(jobs)}")
        folder = _suite(jobs).slurm_dir / "debug" / "%j"
        executor = slurm.make_submitit_executor("debug", folder, None)
        if self.runs_per_task == 1:
            results = [executor.submit(slurm.RunTask(raise_on_failure=False), job).result() for job in jobs]
        else:
            groups = pack(jobs, self.runs_per_task)
            task = slurm.PackedRunTask(raise_on_failure=False)
            results = [summary for group in groups for summary in executor.submit(task, group).result()]
        return print_sweep_end(jobs, results, console)


def _count_todo(jobs: Sequence[JobSpec]) -> int:
    return sum(run_status(job.directory).state != RunState.DONE for job in jobs)


def _suite(jobs: Sequence[JobSpec]) -> SuiteDir:
    return jobs[0].directory.suite_dir


def _suite_root(jobs: Sequence[JobSpec]):
    return _suite(jobs).path.resolve()


def print_sweep_end(jobs: Sequence[JobSpec], results: Sequence[dict[str, Any]], console: Console) -> int:
    """The summary table and what to do next; the exit status of a sweep run to its end here."""
    from bench.launch.progress import summary_table

    console.print(summary_table(results))
    console.print(f"results: {_suite_root(jobs)}")
    by_status = {status: [job.name for job, result in zip(jobs, results) if result.get("status") == status]
                 for status in (Outcome.FAILED, Outcome.INTERRUPTED, Outcome.BUSY)}
    busy, failed, interrupted = by_status[Outcome.BUSY], by_status[Outcome.FAILED], by_status[Outcome.INTERRUPTED]
    if busy:
        console.print(f"[yellow]{len(busy)} run(s) are running in another process[/], left alone: " + ", ".join(busy))
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed[/] (details in <run dir>/{RunDir.ERROR}; running the same "
                      "command again resumes them from their last checkpoint):")
        causes = {job.name: result.get("error", "") for job, result in zip(jobs, results)}
        for name in failed:
            console.print(f"  {name}: {causes[name]}", markup=False, highlight=False, soft_wrap=True)
        return 1
    if interrupted:
        console.print(f"{len(interrupted)} run(s) stopped before finishing: run the same command again "
                      "to resume them from their last checkpoint")
    elif busy:
        console.print("the sweep is not complete while they run: `bench status` shows their progress")
    if interrupted or busy:
        return INTERRUPTED_EXIT_CODE
    return 0
