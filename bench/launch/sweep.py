"""Start a planned sweep: refuse to mix experiments in one run folder, record the resolved spec, hand the runs to
their executor. `bench run` ends here."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rich.console import Console

from algorithms.config import ConfigError
from bench.jobs import JobSpec, RunState
from bench.launch.executors import make_executor
from bench.launch.packing import placement_record, spread_over_devices
from bench.launch.resolve import Placement
from bench.plan.expand import find_conflicts
from bench.plan.spec import SweepSpec, save_resolved
from bench.records.lock import is_running
from bench.records.state import run_status

PLANNED_ACTION = {RunState.DONE: "skip (DONE)", RunState.PRUNED: "skip (pruned by a tuning trial)",
                  RunState.NOT_STARTED: "run", RunState.INTERRUPTED: "resume",
                  RunState.FAILED: "resume (failed before)", RunState.RUNNING: "leave (running)"}


def planned_actions(jobs: Sequence[JobSpec]) -> list[tuple[JobSpec, str]]:
    """What `bench run` would do with each run (``--dry-run``), read from the run directories."""
    return [(job, PLANNED_ACTION[run_status(job.directory).state]) for job in jobs]


def start_sweep(spec: SweepSpec, jobs: Sequence[JobSpec], placement: Placement, console: Console,
                overwrite: bool = False, cli_config_files: Sequence[Path] = (), verbose: bool = False) -> int:
    """Clear (``overwrite``) or check the run folders, write ``<suite>/sweep.yaml``, launch; the exit status."""
    if overwrite:
        running = [job.name for job in jobs if is_running(job.directory)]
        if running:
            raise ConfigError(f"--overwrite: {', '.join(running)} running in another process; stop it first")
        for job in jobs:
            job.directory.clear()
    else:
        conflicts = find_conflicts(jobs)
        if conflicts:
            raise ConfigError(
                f"{len(conflicts)} run(s) already hold a different configuration; not resuming them:\n  "
                + "\n  ".join(conflicts) + "\nUse another --suite, or --overwrite to discard them and start over."
            )
    save_resolved(spec, jobs, jobs[0].directory.suite_dir, cli_config_files, placement_record(placement))
    executor = make_executor(placement.executor, workers=placement.workers, profile=placement.profile,
                             verbose=verbose, runs_per_task=placement.runs_per_task)
    return executor.launch(spread_over_devices(jobs, placement.devices), console)
