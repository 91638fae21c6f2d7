"""The local executor's pool: one spawned process per run, each talking to the launcher over its own pipe.

Each run gets a fresh spawned process so its peak RSS, torch thread setting and CUDA context are its own, and so
that its death (the OOM killer, a segfault, a stray ``kill -9``) touches nothing else: the pool records that one
run as failed (resumable from its checkpoint), starts the next run in its place and carries on. Nothing is shared
between the processes but one pipe each, which a dying process cannot leave locked (a shared queue or a
``ProcessPoolExecutor`` can: one SIGKILL breaks the whole pool).

SIGTERM / SIGUSR2 / SIGINT to the launching process (or to its whole process group, as SLURM and Ctrl-C do) stops
new runs from starting and makes every active run checkpoint and return "interrupted". A second SIGINT kills the
workers at once (their last periodic checkpoint still holds). A worker whose launcher dies (its pipe reaches end of
file) stops the same way, and exits within :data:`ORPHAN_GRACE_S` seconds whatever it is doing: nothing keeps
training unseen.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Sequence

from bench.jobs import AttemptOutcome, JobSpec, Outcome
from bench.records import lock
from bench.train.run import STOP_SIGNALS, run_one

EventHandler = Callable[[dict[str, Any]], None]

ORPHAN_GRACE_S = 20.0  # an orphaned worker's time to checkpoint before it exits regardless
RESULT_EXIT_GRACE_S = 60.0  # a worker that sent its result but does not exit is killed after this
_ORPHAN_EXIT_CODE = 75


# In the worker process -----------------------------------------------------------------------------------------
def _ignore_stop_signals() -> None:
    # A worker reacts to stop signals only through run_one's own handlers: outside training a Ctrl-C to the process
    # group must not raise KeyboardInterrupt in the middle of writing a record.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class _Sender:
    """Events to the launcher; once the launcher is gone they are dropped (the run records everything itself)."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self.broken = conn, False

    def __call__(self, event: dict[str, Any]) -> None:
        if self.broken:
            return
        try:
            self.conn.send(event)
        except (OSError, ValueError):
            self.broken = True


def _watch_launcher(conn: Connection, stop: threading.Event, finished: threading.Event) -> None:
    """Turn the launcher's stop request, or its death, into a stop signal to this process, repeated until run_one
    returns: a signal that arrives while run_one's handlers are not installed yet (setup) is ignored, so one is not
    enough. An orphan exits after ORPHAN_GRACE_S even if the run has not stopped."""
    signum, deadline = None, None
    while not finished.is_set():
        if deadline is None:
            try:
                if conn.poll(1.0):
                    signum = int(conn.recv())
            except (EOFError, OSError):
                signum, deadline = signal.SIGTERM, time.monotonic() + ORPHAN_GRACE_S
        elif finished.wait(1.0):
            return
        if signum is None:
            continue
        stop.set()
        os.kill(os.getpid(), signum)
        if deadline is not None and time.monotonic() > deadline:
            os._exit(_ORPHAN_EXIT_CODE)


def _worker_main(job: JobSpec, conn: Connection) -> None:
    _ignore_stop_signals()
    stop, finished = threading.Event(), threading.Event()
    threading.Thread(target=_watch_launcher, args=(conn, stop, finished), daemon=True,
                     name="watch-launcher").start()
    send = _Sender(conn)
    try:
        summary = run_one(job, on_event=send, stop_requested=stop.is_set)
    finally:
        finished.set()
    send({"event": "result", "summary": summary})


# In the launching process --------------------------------------------------------------------------------------
@dataclass
class _Worker:
    index: int
    job: JobSpec
    process: Any
    conn: Connection
    summary: dict[str, Any] | None = None
    result_at: float | None = None
    stop_sent: bool = False

    def drain(self, on_event: EventHandler) -> None:
        """Pass on every event waiting in the pipe; a result is kept, not passed on."""
        try:
            while self.conn.poll():
                event = self.conn.recv()
                if event.get("event") == "result":
                    self.summary, self.result_at = event["summary"], time.monotonic()
                else:
                    on_event(event)
        except (EOFError, OSError):
            pass  # the process has exited; what it sent before that has been read

    @property
    def exited(self) -> bool:
        if self.process.exitcode is not None:  # reaps the process when it has ended
            return True
        if self.result_at is not None and time.monotonic() - self.result_at > RESULT_EXIT_GRACE_S:
            self.process.kill()  # it hangs on its way out; its run is recorded already
            self.process.join(timeout=10)
            return True
        return False


class _StopForwarder:
    """On a stop signal: start no new run, pass the signal on to the active workers (SIGKILL on a second SIGINT)."""

    def __init__(self, workers: list[_Worker], on_event: EventHandler, received: list[str] | None = None) -> None:
        self.workers, self.on_event = workers, on_event
        self.received = received if received is not None else []
        self.count, self.signum = 0, None
        self._previous: dict[int, Any] = {}

    @property
    def stopping(self) -> bool:
        return self.count > 0

    @property
    def forced(self) -> bool:
        return self.count > 1 and self.signum == signal.SIGINT

    def __enter__(self) -> "_StopForwarder":
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        self.signum = signum
        self.received.append(signal.Signals(signum).name)
        for worker in list(self.workers):
            try:
                os.kill(worker.process.pid, signal.SIGKILL if self.forced else signum)
            except (ProcessLookupError, TypeError):
                pass
        self.on_event({"event": "notice", "job": "all runs",
                       "message": f"{signal.Signals(signum).name}: " + (
                           "killing workers" if self.forced else "checkpointing active runs, starting no new ones")})

    def send_stop_requests(self) -> None:
        """Outside the signal handler: the pipe message that makes a worker repeat the signal until it stops."""
        for worker in self.workers:
            if not worker.stop_sent and self.signum is not None:
                worker.stop_sent = True
                try:
                    worker.conn.send(int(self.signum))
                except (OSError, ValueError):
                    pass


def run_local(jobs: Sequence[JobSpec], workers: int, on_event: EventHandler,
              signals_received: list[str] | None = None) -> list[dict[str, Any]]:
    """Run ``jobs`` in at most ``workers`` processes at a time; returns one summary per job, in job order. The
    names of the stop signals this process received meanwhile are appended to ``signals_received`` (a packed
    SLURM task re-raises USR2 afterwards so that submitit requeues it)."""
    if not jobs:
        return []
    context = mp.get_context("spawn")
    results: dict[int, dict[str, Any]] = {}
    queued = deque(enumerate(jobs))
    active: list[_Worker] = []
    try:
        with _StopForwarder(active, on_event, signals_received) as stopper:
            while queued or active:
                while queued and len(active) < workers and not stopper.stopping:
                    index, job = queued.popleft()
                    if job.directory.is_done or job.directory.is_pruned:
                        results[index] = run_one(job, on_event)  # a skip: no process needed
                    else:
                        active.append(_start_worker(context, index, job))
                if stopper.stopping:
                    stopper.send_stop_requests()
                    while queued:  # never started: interrupted, not failed
                        index, job = queued.popleft()
                        results[index] = run_one(job, on_event, stop_requested=lambda: True)
                for worker in _wait_for_exits(active, on_event):
                    active.remove(worker)
                    results[worker.index] = _outcome(worker, on_event, stopper.stopping)
    finally:
        stop_stray_children()
    return [results[index] for index in range(len(jobs))]


def _start_worker(context: Any, index: int, job: JobSpec) -> _Worker:
    ours, theirs = context.Pipe(duplex=True)
    process = context.Process(target=_worker_main, args=(job, theirs), name=f"bench-run:{job.name}")
    process.start()
    theirs.close()  # only the worker holds its end: when the worker dies, our end reads end of file
    return _Worker(index, job, process, ours)


def _wait_for_exits(active: list[_Worker], on_event: EventHandler, timeout: float = 0.25) -> list[_Worker]:
    if not active:
        return []
    wait([w.conn for w in active] + [w.process.sentinel for w in active], timeout=timeout)
    ended = []
    for worker in active:
        worker.drain(on_event)
        if worker.exited:
            worker.drain(on_event)  # what it wrote just before exiting
            worker.conn.close()
            ended.append(worker)
    return ended


def _outcome(worker: _Worker, on_event: EventHandler, stopping: bool) -> dict[str, Any]:
    if worker.summary is not None:
        return worker.summary
    job, exitcode = worker.job, worker.process.exitcode
    if job.directory.is_done:  # it died after finishing its records
        return {**job.directory.read_summary(), "status": Outcome.DONE}
    if stopping:  # killed on purpose (second Ctrl-C): its checkpoints hold, nothing failed
        summary = {**job.identity(), "status": Outcome.INTERRUPTED, "detail": "worker killed while stopping"}
    else:
        cause = describe_exit(exitcode)
        summary = {**job.identity(), "status": Outcome.FAILED, "error": f"worker process died: {cause}"}
        problem = record_worker_death(job, worker.process.pid, cause)
        if problem:
            on_event({"event": "notice", "job": job.name, "message": problem})
    on_event({"event": "end", "job": job.name, "summary": summary})
    return summary


def describe_exit(exitcode: int | None) -> str:
    """What ended a worker that sent no result, in words: its signal, or its exit code."""
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        number = -exitcode
        if number == signal.SIGKILL:
            return f"killed (signal {number}; out of memory?)"
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        return f"killed (signal {number}, {name})"
    return f"exited with code {exitcode} without recording a result"


def record_worker_death(job: JobSpec, pid: int, cause: str) -> str | None:
    """Close the run's records the way run_one would have: error.txt, the attempt (``killed``, with the cause),
    a line in run.log, the dead process's lock. Its checkpoints stay, so the next run resumes it. Returns what
    could not be written, if anything."""
    run = job.directory
    if not run.config_file.exists():  # it died before writing anything: nothing to close
        return None
    message = f"worker process died: {cause}"
    try:
        run.free_space_reserve()
        run.write_error(message + "\n")
        run.close_running_attempt(AttemptOutcome.KILLED, cause=cause)
        run.note(message + "; the next run resumes it from its last checkpoint")
        lock.release_if_owner(run, pid)
    except OSError as error:
        return f"could not record the death in {run.path}: {error}"
    return None


def stop_stray_children() -> None:
    """Kill child processes still alive when the pool returns (an exception in the launcher, a worker that hangs
    on its way out): reparented to init they would outlive `bench run` unseen."""
    for process in mp.active_children():
        process.kill()
        process.join(timeout=10)
