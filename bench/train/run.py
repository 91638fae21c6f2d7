"""``run_one``: the only place that owns an env, an agent and a replay buffer.

The local pool, a SLURM array task, an Optuna trial and the tests all call this one function with a
JobSpec. It writes the run directory (:class:`bench.jobs.RunDir`), resumes from the run's last checkpoint
when an earlier attempt was killed, and returns the summary.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable

from bench.jobs import AttemptOutcome, JobSpec, Outcome, RunDir, describe_fault, now_iso
from bench.plugins import load_plugins
from bench.records import lock
from bench.records.csvlog import truncate_csv
from bench.records.manifest import manifest
from bench.train import checkpoint, replay
from bench.train.trainer import STOP_SIGNALS, EvalHook, EventSink, RunInterrupted, RunPruned, StopSignals, Trainer

__all__ = ["run_one", "INTERRUPTED_EXIT_CODE", "STOP_SIGNALS"]

INTERRUPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later" - what a launcher should requeue


def run_one(job: JobSpec, on_event: EventSink | None = None, stop_requested: Callable[[], bool] | None = None,
            on_eval: EvalHook | None = None) -> dict[str, Any]:
    """Train ``job`` to completion (resuming an interrupted attempt) and record it. A DONE or pruned run is skipped.

    ``on_eval`` is called after every evaluation; when it returns True the run stops there and is recorded as
    pruned (``PRUNED`` in its directory). Never raises for a failed run: the failure is recorded in the run
    directory and reflected in the returned summary's ``status`` (an :class:`~bench.jobs.Outcome`).
    """
    run = job.directory
    emit = _with_job(on_event or (lambda event: None), job.name)
    finished = finished_summary(job, on_event)
    if finished is not None:
        return finished
    load_plugins(job.plugins)
    if stop_requested and stop_requested():
        return _not_run(job, Outcome.INTERRUPTED, emit)
    run.path.mkdir(parents=True, exist_ok=True)
    if not lock.claim(run):
        return _not_run(job, Outcome.BUSY, emit)
    signals = StopSignals()
    try:
        resume_state = prepare_attempt(job, run, emit)
        run.reserve_space()
        with signals:
            summary = Trainer(job, run, emit, resume_state, signals, on_eval).train()
        _record_success(run, summary)
    except RunPruned as pruned:
        summary = _record_pruned(job, run, str(pruned))
    except RunInterrupted as stop:
        summary = {**job.identity(), "status": Outcome.INTERRUPTED, "detail": str(stop),
                   "signals": sorted(set(signals.all_received))}
    except BaseException as error:  # noqa: BLE001 - a crash must leave a record, whatever it was
        summary = _record_failure(job, run, error)
        if not isinstance(error, Exception):
            raise
    finally:
        lock.release(run)
    emit({"event": "end", "summary": summary})
    return summary


def finished_summary(job: JobSpec, on_event: EventSink | None = None) -> dict[str, Any] | None:
    """The summary ``run_one`` returns for a run that is DONE (status "skipped") or pruned, with its event; None
    for a run that still has work. Cheap (no torch, no env): launchers call it before starting a process."""
    run = job.directory
    emit = _with_job(on_event or (lambda event: None), job.name)
    if run.is_done:
        summary = run.read_summary()
        emit({"event": "skipped", "summary": summary})
        return {**summary, "status": Outcome.SKIPPED}
    if run.is_pruned:
        return _not_run(job, Outcome.PRUNED, emit)
    return None


def _not_run(job: JobSpec, status: Outcome, emit: EventSink) -> dict[str, Any]:
    summary = {**job.identity(), "status": status}
    emit({"event": "end", "summary": summary})
    return summary


def _with_job(emit: EventSink, name: str) -> EventSink:
    return lambda event: emit({"job": name, **event})


def prepare_attempt(job: JobSpec, run: RunDir, emit: EventSink) -> dict[str, Any] | None:
    """Resume state of an earlier attempt (after cleaning its records up to the checkpoint), or None
    after clearing the directory for a fresh start."""
    def notice(message: str) -> None:
        run.note(message)
        emit({"event": "notice", "message": message})

    if not run.config_file.exists():
        return _start_over(job, run)
    if run.read_config() is None:
        notice(f"{RunDir.CONFIG} is unreadable: starting over from step 0")
        return _start_over(job, run)
    loaded = checkpoint.load(run)
    for message in loaded.notices:
        notice(message)
    if loaded.state is None:
        notice("no usable checkpoint: starting over from step 0")
        return _start_over(job, run)
    damaged = replay.damaged_files(run.replay_dir, loaded.state["replay"])
    if damaged:
        # Every checkpoint points into the same replay files, so none of them can be used without them.
        notice(f"replay file {'; '.join(damaged)}: the checkpoints need it; starting over from step 0")
        return _start_over(job, run)
    step = int(loaded.state["step"])
    for path in (run.eval_log, run.train_log):
        after, malformed = truncate_csv(path, step)
        if malformed:
            notice(f"{path.name}: dropped {malformed} malformed row(s) (a line cut short by the kill)")
        if after:
            notice(f"{path.name}: dropped {after} row(s) past the checkpoint's step {step}")
    run.error_file.unlink(missing_ok=True)
    notice(f"resuming from {loaded.source.name} at env step {step}")
    return loaded.state


def _start_over(job: JobSpec, run: RunDir) -> None:
    run.clear(keep_history=True)  # the earlier attempts and their notices stay on record
    run.write_config(job.resolved_config())
    run.write_manifest(manifest(job.device, job.argv))


def _record_success(run: RunDir, summary: dict[str, Any]) -> None:
    _finish_manifest(run)
    run.write_summary(summary)
    run.mark_done()


def _record_pruned(job: JobSpec, run: RunDir, detail: str) -> dict[str, Any]:
    _finish_manifest(run)
    summary = {**job.identity(), "status": Outcome.PRUNED, "detail": detail}
    run.write_summary(summary)
    run.mark_pruned(detail)
    return summary


def _record_failure(job: JobSpec, run: RunDir, error: BaseException) -> dict[str, Any]:
    """Record a failed attempt. On a filesystem fault the reason is the fault and its path ("disk full at ..."),
    also as the last line of error.txt (what `bench status` shows); the space reserve is given back first so
    that these records fit on a full disk. A record that still cannot be written is skipped, not raised."""
    fault = describe_fault(error)
    reason = fault or f"{type(error).__name__}: {error}"
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    summary = {**job.identity(), "status": Outcome.FAILED, "error": reason}
    for write in (run.free_space_reserve, lambda: run.write_error(text + (f"{fault}\n" if fault else "")),
                  lambda: run.close_running_attempt(AttemptOutcome.FAILED, cause=reason),
                  lambda: _finish_manifest(run), lambda: run.write_summary(summary)):
        try:
            write()
        except Exception:  # noqa: BLE001 - one unwritable record must not hide the others or the reason
            pass
    return summary


def _finish_manifest(run: RunDir) -> None:
    manifest_data = run.read_manifest()
    manifest_data["end_time"] = now_iso()
    run.write_manifest(manifest_data)
