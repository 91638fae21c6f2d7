"""The local executor's process pool: one spawned process per run, stop signals forwarded to the runs.

Each run gets a fresh spawned process so its peak RSS, torch thread setting and CUDA context are its own, and so
that a run whose process dies (out of memory, segfault, SIGKILL) takes no other run with it: the processes are
plain ``multiprocessing`` processes, not a ``concurrent.futures`` pool, which marks itself broken and terminates
every other worker when one dies. SIGTERM / SIGUSR2 / SIGINT to the launching process (or to its whole process
group, as SLURM and Ctrl-C do) stops new runs from starting and makes every active run checkpoint and return
"interrupted". A second SIGINT kills the workers at once (their last periodic checkpoint still holds).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import signal
import time
from collections import deque
from typing import Any, Callable, Sequence

from bench.jobs import JobSpec, Outcome
from bench.train.run import STOP_SIGNALS, run_one

EventHandler = Callable[[dict[str, Any]], None]
POLL_S = 0.25


def _ignore_stop_signals() -> None:
    # Workers and the manager react to stop signals only through run_one's own handlers (or not at all).
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _worker(index: int, job: JobSpec, events: Any, results: Any, stop: Any) -> None:
    _ignore_stop_signals()
    results.put((index, run_one(job, on_event=events.put, stop_requested=stop.is_set)))


class _StopForwarder:
    """In the launching process: on a stop signal, set the shared stop flag and pass the signal on."""

    def __init__(self, active: Callable[[], list[int]], stop: Any, on_event: EventHandler,
                 received: list[str] | None = None) -> None:
        self.active, self.stop, self.on_event = active, stop, on_event
        self.received = received if received is not None else []
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
        self.received.append(signal.Signals(signum).name)
        self.stop.set()
        force = self.count > 1 and signum == signal.SIGINT
        for pid in self.active():
            try:
                os.kill(pid, signal.SIGKILL if force else signum)
            except ProcessLookupError:
                pass
        self.on_event({"event": "notice", "job": "all runs",
                       "message": f"{signal.Signals(signum).name}: "
                                  + ("killing workers" if force else "checkpointing active runs, starting no new ones")})


def run_local(jobs: Sequence[JobSpec], workers: int, on_event: EventHandler,
              signals_received: list[str] | None = None) -> list[dict[str, Any]]:
    """Run ``jobs`` in at most ``workers`` processes at a time; returns one summary per job, in job order. The
    names of the stop signals this process received while they ran are appended to ``signals_received``."""
    if not jobs:
        return []
    context = mp.get_context("spawn")
    manager = _start_manager(context)
    try:
        events, results, stop = manager.Queue(), manager.Queue(), manager.Event()
        pool = _Pool(context, jobs, workers, events, results, stop)
        with _StopForwarder(pool.active_pids, stop, on_event, signals_received):
            while pool.busy():
                pool.start_more()
                time.sleep(POLL_S)
                _drain(events, on_event)
                pool.collect(on_event)
            _drain(events, on_event)
        return pool.summaries()
    finally:
        manager.shutdown()
        stop_stray_children()


class _Pool:
    """The runs waiting, running (one process each) and finished."""

    def __init__(self, context: Any, jobs: Sequence[JobSpec], workers: int, events: Any, results: Any,
                 stop: Any) -> None:
        self.context, self.jobs, self.workers = context, list(jobs), workers
        self.events, self.results, self.stop = events, results, stop
        self.waiting = deque(range(len(self.jobs)))
        self.running: dict[int, Any] = {}
        self.finished: dict[int, dict[str, Any]] = {}

    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    def active_pids(self) -> list[int]:
        return [process.pid for process in list(self.running.values()) if process.pid is not None]

    def start_more(self) -> None:
        while self.waiting and len(self.running) < self.workers:
            index = self.waiting.popleft()
            if self.stop.is_set():
                # Stopping: no new process; run_one still says what the run is (skipped when DONE, else interrupted)
                self.finished[index] = run_one(self.jobs[index], on_event=self.events.put, stop_requested=lambda: True)
                continue
            process = self.context.Process(target=_worker, name=f"bench-run-{index}",
                                           args=(index, self.jobs[index], self.events, self.results, self.stop))
            process.start()
            self.running[index] = process

    def collect(self, on_event: EventHandler) -> None:
        """Summaries of the runs whose process has ended; a process that died without one is recorded here."""
        self._read_results()
        for index, process in list(self.running.items()):
            if process.exitcode is None:
                continue
            process.join()
            del self.running[index]
            self._read_results()
            if index not in self.finished:
                self.finished[index] = _died(self.jobs[index], process.exitcode, on_event, self.stop.is_set())

    def _read_results(self) -> None:
        while True:
            try:
                index, summary = self.results.get_nowait()
            except queue_module.Empty:
                return
            self.finished[index] = summary

    def summaries(self) -> list[dict[str, Any]]:
        return [self.finished[index] for index in range(len(self.jobs))]


def stop_stray_children() -> None:
    """Kill child processes still alive once every run has ended, so that none outlives `bench run` reparented
    to init (seen with CPython's ProcessPoolExecutor, which this pool no longer uses: gh-115634, gh-119592)."""
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


def _died(job: JobSpec, exitcode: int, on_event: EventHandler, stopping: bool) -> dict[str, Any]:
    identity = job.identity()
    if stopping and exitcode == -signal.SIGKILL:  # killed on purpose (second Ctrl-C): its checkpoints hold
        summary = {**identity, "status": Outcome.INTERRUPTED, "detail": "worker killed while stopping"}
    else:
        # The worker process died (out of memory, segfault, killed) before run_one could record anything.
        how = f"killed by {signal.Signals(-exitcode).name}" if exitcode < 0 else f"exit status {exitcode}"
        message = f"worker process died ({how})"
        run = job.directory
        if run.path.exists() and not run.error_file.exists():
            run.write_error(message + "\n")
        summary = {**identity, "status": Outcome.FAILED, "error": message}
    on_event({"event": "end", "job": job.name, "summary": summary})
    return summary
