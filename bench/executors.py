"""Where ``run_one`` executes. Executors differ only in that; everything else reads the run directories.

``local``: a process pool. Each run gets a fresh spawned process (``max_tasks_per_child=1``) so its peak
RSS, torch thread setting and CUDA context are its own, and a crash in one run cannot poison another.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Sequence

from bench import records
from bench.run import run_one
from bench.sweep import JobSpec

EventHandler = Callable[[dict[str, Any]], None]


def _pool_entry(job: JobSpec, events: Any) -> dict[str, Any]:
    return run_one(job, reporter=events.put)


def run_local(jobs: Sequence[JobSpec], workers: int, on_event: EventHandler) -> list[dict[str, Any]]:
    """Run ``jobs`` in a pool of ``workers`` processes; returns one summary per job, in job order."""
    if not jobs:
        return []
    context = mp.get_context("spawn")
    with context.Manager() as manager:
        events = manager.Queue()
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, max_tasks_per_child=1) as pool:
            futures: dict[Future, JobSpec] = {pool.submit(_pool_entry, job, events): job for job in jobs}
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                _drain(events, on_event)
            _drain(events, on_event)
        return [_result(future, job, on_event) for future, job in futures.items()]


def _drain(events: Any, on_event: EventHandler) -> None:
    while True:
        try:
            on_event(events.get_nowait())
        except queue_module.Empty:
            return


def _result(future: Future, job: JobSpec, on_event: EventHandler) -> dict[str, Any]:
    error = future.exception()
    if error is None:
        return future.result()
    # The worker process died (killed, out of memory, segfault) before run_one could record anything.
    directory = Path(job.run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    message = f"worker process died: {type(error).__name__}: {error}"
    if not (directory / records.ERROR_FILE).exists():
        (directory / records.ERROR_FILE).write_text(message + "\n")
    summary = {"suite": job.suite, "algo": job.algo, "env_id": job.env_id, "seed": job.seed,
               "status": "failed", "error": message}
    on_event({"event": "end", "job": job.name, "summary": summary})
    return summary
