"""The state of a run, read from its directory alone (no scheduler): what `bench status`, the report's reader,
SLURM submission and `bench run --dry-run` agree on."""

from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path

from bench.jobs import RunDir, RunState, as_run_dir
from bench.records.lock import is_running


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    detail: str = ""


def run_status(run: RunDir | Path) -> RunStatus:
    run = as_run_dir(run)
    if run.is_done:
        return RunStatus(RunState.DONE)
    if run.is_pruned:
        return RunStatus(RunState.PRUNED, run.pruned_detail())
    if is_running(run):
        return RunStatus(RunState.RUNNING)
    if run.error_file.exists():
        return RunStatus(RunState.FAILED, run.error_last_line())
    if run.config_file.exists():
        step = run.checkpoint_step()
        return RunStatus(RunState.INTERRUPTED, f"checkpoint at step {step}" if step is not None else "no checkpoint")
    return RunStatus(RunState.NOT_STARTED)
