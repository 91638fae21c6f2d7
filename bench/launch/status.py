"""`bench status`: the state of runs read from their directories (done / running / interrupted / failed / not
started), the runs a sweep planned that have not started yet, and the SLURM queue state of submitted runs where
``squeue`` answers; ``--watch``: the running runs' last evaluation, speed and ETA, refreshed."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from bench.jobs import RunDir, RunState, SuiteDir
from bench.records.csvlog import last_row
from bench.records.discover import find_run_dirs
from bench.records.state import run_status
from bench.records.verify import verify_done

STATES = tuple(RunState)
IDLE_GRACE_S = 15.0  # `bench status --watch` ends once no run has been running for this long


@dataclass(frozen=True)
class RunRow:
    run: RunDir
    state: RunState
    detail: str
    queue: str = ""  # "<task id> <STATE> (<reason>)" while its SLURM task is in the queue

    @property
    def name(self) -> str:
        return f"{self.run.suite}/{self.run.name}"


def status_run_dirs(path: Path) -> list[RunDir]:
    """The runs at or below ``path`` (a results root, a suite folder or a single run): those that exist, plus the
    runs of the sweeps launched there (``<suite>/sweep.yaml``) that have no directory yet."""
    found = set(find_run_dirs(path))
    if not RunDir(path).looks_like_run:
        found |= set(planned_runs(Path(path)))
    return sorted(found, key=lambda run: run.path)


def planned_runs(path: Path) -> list[RunDir]:
    """Runs listed in the ``sweep.yaml`` of ``path`` (a suite folder) or of the suites directly below it."""
    suites = {SuiteDir(path)} | {SuiteDir(folder) for folder in Path(path).glob("*") if folder.is_dir()}
    return [suite.run_named(name) for suite in suites if suite.sweep_file.exists() for name in suite.planned_runs()]


def row_for(run: RunDir) -> RunRow:
    status = run_status(run)
    detail = status.detail
    if status.state == RunState.DONE:
        problems = verify_done(run)
        if problems:
            return RunRow(run, RunState.SUSPECT, "; ".join(problems))
        summary = run.read_summary()
        detail = f"final return {summary['final_eval_return']:.1f}, {summary.get('resumes', 0)} resume(s)"
    elif status.state == RunState.RUNNING:
        detail = _progress(run)
    return RunRow(run, status.state, detail)


def _progress(run: RunDir) -> str:
    """"step 1200/5000 on <host>" from the heartbeat in attempts.json and the budget in config.yaml."""
    attempts = run.attempts()
    config = run.read_config() or {}
    if not attempts:
        return ""
    total = config.get("protocol", {}).get("total_steps", "?")
    return f"step {attempts[-1].get('end_step', 0)}/{total} on {attempts[-1].get('host', '?')}"


def rows_for(runs: Iterable[RunDir]) -> list[RunRow]:
    """Rows with the queue state joined in: a run not started whose task waits in the queue is "pending"."""
    from bench.launch import slurm

    rows = [row_for(run) for run in runs]
    suites = {row.run.suite_dir for row in rows}
    queues = {suite: slurm.queue_states(suite) for suite in suites}
    not_started = {row.run.name for row in rows if row.state == RunState.NOT_STARTED}
    failures = {suite: slurm.start_failures(suite, runs=not_started) for suite in suites}
    joined = []
    for row in rows:
        queue = queues[row.run.suite_dir].get(row.run.name, "")
        failure = failures[row.run.suite_dir].get(row.run.name)
        state, detail = row.state, row.detail
        if queue and row.state == RunState.NOT_STARTED:  # its task is queued, or started but has not claimed the run
            state, detail = ((RunState.RUNNING, "task starting") if queue.split()[1] == "RUNNING"
                             else (RunState.PENDING, detail))
        elif failure is not None and row.state == RunState.NOT_STARTED:
            state, detail = RunState.FAILED, (f"{FAILED_TO_START} (task {failure.task}, {failure.count} time(s) in "
                                              f"a row): " + " | ".join(failure.head or ("empty log",))
                                              + f" (log {failure.log})")
        joined.append(replace(row, queue=queue, state=state, detail=detail))
    return joined


FAILED_TO_START = "failed to start"


def attention_lines(rows: Iterable[RunRow]) -> list[str]:
    """Whole lines (tables wrap) for the rows a user must act on: DONE runs whose files disagree, and runs whose
    SLURM task failed to start."""
    lines = []
    for row in rows:
        if row.state == RunState.SUSPECT:
            lines.append(f"suspect: {row.run.path}: {row.detail} (DONE, but its files disagree; bench report leaves "
                         f"it out; `bench run ... --overwrite` trains it again)")
        elif row.state == RunState.FAILED and row.detail.startswith(FAILED_TO_START):
            lines.append(f"{FAILED_TO_START}: {row.run.path}: {row.detail.removeprefix(FAILED_TO_START).lstrip()}")
    return lines


def totals(rows: Iterable[RunRow]) -> dict[tuple[str, str], Counter]:
    """Counts of each state per (algorithm, environment)."""
    table: dict[tuple[str, str], Counter] = {}
    for row in rows:
        table.setdefault((row.run.algo, row.run.env_id), Counter())[row.state] += 1
    return dict(sorted(table.items()))


# The live view (bench status --watch) ---------------------------------------------------------------------
@dataclass(frozen=True)
class LiveRow:
    """Where a running run is: from its last train.csv and eval.csv rows, its budget and its attempt."""

    name: str
    step: int
    total: int | None
    last_eval: tuple[int, float] | None   # (env step, mean return)
    sps: float | None                     # env steps per second over the last logged interval (evaluations in)
    host: str

    @property
    def eta_s(self) -> float | None:
        if self.total is None or not self.sps:
            return None
        return max(0, self.total - self.step) / self.sps


def live_row(row: RunRow) -> LiveRow:
    run = row.run
    total = (run.read_config() or {}).get("protocol", {}).get("total_steps")
    attempts = run.attempts()
    train, evaluation = last_row(run.train_log), last_row(run.eval_log)
    step = max(int(train["step"]) if train else 0, int(attempts[-1].get("end_step", 0)) if attempts else 0)
    return LiveRow(
        name=row.name, step=step, total=int(total) if total is not None else None,
        last_eval=(int(evaluation["step"]), float(evaluation["eval/return_mean"])) if evaluation else None,
        sps=_number(train.get("time/sps")) if train else None,
        host=str(attempts[-1].get("host", "?")) if attempts else "?")


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class Snapshot:
    live: list[LiveRow]       # the running runs
    counts: Counter           # every run's state
    idle_s: float             # seconds since a run was last seen running


def watch(list_runs: Callable[[], Iterable[RunDir]], interval_s: float, grace_s: float = IDLE_GRACE_S,
          sleep: Callable[[float], None] = time.sleep) -> Iterator[Snapshot]:
    """A snapshot every ``interval_s`` seconds until no run has been running for ``grace_s`` (a local pool takes a
    few seconds between one run's end and the next one's start), or at once when none runs at the start. The last
    snapshot is yielded too."""
    last_seen = time.monotonic() - grace_s  # nothing running at the first look: one snapshot only
    while True:
        rows = rows_for(list_runs())
        live = [live_row(row) for row in rows if row.state in (RunState.RUNNING, RunState.PENDING)
                and row.run.config_file.exists()]
        if any(row.state in (RunState.RUNNING, RunState.PENDING) for row in rows):
            last_seen = time.monotonic()
        idle = time.monotonic() - last_seen
        yield Snapshot(live, Counter(row.state for row in rows), idle)
        if idle >= grace_s:
            return
        sleep(interval_s)
