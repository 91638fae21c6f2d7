"""The local executor's process pool: one spawned process per run, stop signals forwarded to the runs.

Each run gets a fresh spawned process (``max_tasks_per_child=1``) so its peak RSS, torch thread setting and CUDA
context are its own. SIGTERM / SIGUSR2 / SIGINT to the launching process (or to its whole process group, as SLURM
and Ctrl-C do) stops new runs from starting and makes every active run checkpoint and return "interrupted". A
second SIGINT kills the workers at once (their last periodic checkpoint still holds).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

from bench.jobs import JobSpec, Outcome
from bench.train.run import STOP_SIGNALS, run_one

EventHandler = Callable[[dict[str, Any]], None]


def _ignore_stop_signals() -> None:
    # Workers and the manager react to stop signals only through run_one's own handlers (or not at all).
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _pool_entry(job: JobSpec, events: Any, stop: Any) -> dict[str, Any]:
    return run_one(job, on_event=events.put, stop_requested=stop.is_set)


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
    identity = job.identity()
    error = future.exception()
    if error is None:
        return future.result()
    if stopping:  # killed on purpose (second Ctrl-C): its checkpoints hold, nothing failed
        summary = {**identity, "status": Outcome.INTERRUPTED, "detail": "worker killed while stopping"}
    else:
        # The worker process died (out of memory, segfault, killed) before run_one could record anything.
        message = f"worker process died: {type(error).__name__}: {error}"
        run = job.directory
        if run.path.exists() and not run.error_file.exists():
            run.write_error(message + "\n")
        summary = {**identity, "status": Outcome.FAILED, "error": message}
    on_event({"event": "end", "job": job.name, "summary": summary})
    return summary


