"""Where runs execute. One interface, three executors; everything else reads the run directories.

    executor.launch(jobs, console) -> exit status

``local`` (:class:`LocalExecutor`): a process pool on this machine; blocks with live progress. Each run gets a
fresh spawned process (``max_tasks_per_child=1``) so its peak RSS, torch thread setting and CUDA context are its
own, and a crash in one run cannot poison another.

``slurm`` (:class:`SubmititExecutor`): submits the runs as SLURM job arrays through submitit and returns at once
(:mod:`bench.slurm`). ``debug``: submitit's in-process executor running the same task as a SLURM array task does,
one run after the other, for stepping through with a debugger.

Stopping the local pool: SIGTERM / SIGUSR2 / SIGINT to the launching process (or to its whole process group, as
SLURM and Ctrl-C do) stops new runs from starting and makes every active run checkpoint and return "interrupted".
A second SIGINT kills the workers at once (their last periodic checkpoint still holds).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from rich.console import Console

from bench import records
from bench.profiles import ClusterProfile
from bench.run import INTERRUPTED_EXIT_CODE, STOP_SIGNALS, run_one
from bench.sweep import JobSpec

EventHandler = Callable[[dict[str, Any]], None]


def _ignore_stop_signals() -> None:
    # Workers and the manager react to stop signals only through run_one's own handlers (or not at all).
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _pool_entry(job: JobSpec, events: Any, stop: Any) -> dict[str, Any]:
    return run_one(job, reporter=events.put, stop_requested=stop.is_set)


class _StopForwarder:
    """In the launching process: on a stop signal, set the shared stop flag and pass the signal on."""

    def __init__(self, pool: ProcessPoolExecutor, stop: Any, on_event: EventHandler) -> None:
        self.pool, self.stop, self.on_event = pool, stop, on_event
        self.count = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopForwarder":
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        self.stop.set()
        force = self.count > 1 and signum == signal.SIGINT
        for pid in list(getattr(self.pool, "_processes", {}) or {}):
            try:
                os.kill(pid, signal.SIGKILL if force else signum)
            except ProcessLookupError:
                pass
        self.on_event({"event": "notice", "job": "all runs",
                       "message": f"{signal.Signals(signum).name}: "
                                  + ("killing workers" if force else "checkpointing active runs, starting no new ones")})


def run_local(jobs: Sequence[JobSpec], workers: int, on_event: EventHandler) -> list[dict[str, Any]]:
    """Run ``jobs`` in a pool of ``workers`` processes; returns one summary per job, in job order."""
    if not jobs:
        return []
    context = mp.get_context("spawn")
    manager = _start_manager(context)
    try:
        events, stop = manager.Queue(), manager.Event()
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, max_tasks_per_child=1,
                                 initializer=_ignore_stop_signals) as pool, _StopForwarder(pool, stop, on_event):
            futures: dict[Future, JobSpec] = {pool.submit(_pool_entry, job, events, stop): job for job in jobs}
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                _drain(events, on_event)
            _drain(events, on_event)
        return [_result(future, job, on_event, stop.is_set()) for future, job in futures.items()]
    finally:
        manager.shutdown()
        stop_stray_children()


def stop_stray_children() -> None:
    """Kill child processes still alive after the pool has shut down. CPython 3.11-3.14's ProcessPoolExecutor with
    max_tasks_per_child can start a replacement worker while it shuts down (gh-115634, gh-119592): that process
    waits forever for work and, reparented to init, outlived `bench run` (seen after a SIGTERM)."""
    for process in mp.active_children():
        process.kill()
        process.join(timeout=10)


def _start_manager(context: Any) -> Any:
    from multiprocessing.managers import SyncManager

    manager = SyncManager(ctx=context)
    manager.start(_ignore_stop_signals)  # else Ctrl-C to the process group would kill the event queue
    return manager


def _drain(events: Any, on_event: EventHandler) -> None:
    while True:
        try:
            on_event(events.get_nowait())
        except queue_module.Empty:
            return


def _result(future: Future, job: JobSpec, on_event: EventHandler, stopping: bool) -> dict[str, Any]:
    identity = {"suite": job.suite, "algo": job.algo, "env_id": job.env_id, "seed": job.seed}
    error = future.exception()
    if error is None:
        return future.result()
    if stopping:  # killed on purpose (second Ctrl-C): its checkpoints hold, nothing failed
        summary = {**identity, "status": "interrupted", "detail": "worker killed while stopping"}
    else:
        # The worker process died (out of memory, segfault, killed) before run_one could record anything.
        message = f"worker process died: {type(error).__name__}: {error}"
        directory = Path(job.run_dir)
        if directory.exists() and not (directory / records.ERROR_FILE).exists():
            (directory / records.ERROR_FILE).write_text(message + "\n")
        summary = {**identity, "status": "failed", "error": message}
    on_event({"event": "end", "job": job.name, "summary": summary})
    return summary


class Executor(Protocol):
    def launch(self, jobs: Sequence[JobSpec], console: Console) -> int:
        """Run (or submit) ``jobs``; DONE runs are skipped. Returns the command's exit status."""


def make_executor(name: str, workers: int = 1, profile: ClusterProfile | None = None) -> Executor:
    if name == "local":
        return LocalExecutor(workers)
    if name in ("slurm", "debug"):
        return SubmititExecutor(name, profile)
    raise ValueError(f"unknown executor {name!r}")


class LocalExecutor:
    def __init__(self, workers: int) -> None:
        self.workers = workers

    def launch(self, jobs: Sequence[JobSpec], console: Console) -> int:
        from bench.progress import SweepProgress

        workers, todo = min(self.workers, len(jobs)), _count_todo(jobs)
        console.print(f"{len(jobs)} runs ({todo} to do, {len(jobs) - todo} already done) with {workers} workers; "
                      f"results in {_suite_root(jobs)}")
        with SweepProgress(len(jobs), jobs[0].protocol["total_steps"], console) as progress:
            results = run_local(jobs, workers, progress.handle)
        return report(jobs, results, console)


class SubmititExecutor:
    def __init__(self, cluster: str, profile: ClusterProfile | None) -> None:
        if cluster == "slurm" and profile is None:
            raise ValueError("the slurm executor needs a cluster profile")
        self.cluster, self.profile = cluster, profile

    def launch(self, jobs: Sequence[JobSpec], console: Console) -> int:
        from bench import slurm

        if self.cluster == "slurm":
            assert self.profile is not None
            return slurm.submit(jobs, self.profile, console)
        console.print(f"{len(jobs)} runs ({_count_todo(jobs)} to do) in this process (submitit debug executor); "
                      f"results in {_suite_root(jobs)}")
        folder = Path(jobs[0].run_dir).parents[2] / slurm.SLURM_DIR / "debug" / "%j"
        executor = slurm.make_submitit_executor("debug", folder, None)
        results = [executor.submit(slurm.RunTask(raise_on_failure=False), job).result() for job in jobs]
        return report(jobs, results, console)


def _count_todo(jobs: Sequence[JobSpec]) -> int:
    return sum(records.run_status(Path(job.run_dir)).state != "done" for job in jobs)


def _suite_root(jobs: Sequence[JobSpec]) -> Path:
    return Path(jobs[0].run_dir).parents[2].resolve()


def report(jobs: Sequence[JobSpec], results: Sequence[dict[str, Any]], console: Console) -> int:
    """The summary table and what to do next; the exit status of a sweep run to its end here."""
    from bench.progress import summary_table

    console.print(summary_table(results))
    console.print(f"results: {_suite_root(jobs)}")
    by_status = {status: [job.name for job, result in zip(jobs, results) if result.get("status") == status]
                 for status in ("failed", "interrupted", "busy")}
    if by_status["busy"]:
        console.print(f"[yellow]{len(by_status['busy'])} run(s) are running in another process[/], left alone: "
                      + ", ".join(by_status["busy"]))
    if by_status["failed"]:
        console.print(f"[red]{len(by_status['failed'])} run(s) failed[/] (traceback in <run dir>/error.txt): "
                      + ", ".join(by_status["failed"]))
        return 1
    if by_status["interrupted"]:
        console.print(f"{len(by_status['interrupted'])} run(s) stopped before finishing: run the same command again "
                      "to resume them from their last checkpoint")
    elif by_status["busy"]:
        console.print("the sweep is not complete while they run: `bench status` shows their progress")
    if by_status["interrupted"] or by_status["busy"]:
        return INTERRUPTED_EXIT_CODE
    return 0
