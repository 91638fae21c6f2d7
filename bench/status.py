"""State of runs read from their directories (done / running / interrupted / failed / not started), joined with
the SLURM queue state of runs submitted with ``--executor slurm`` where ``squeue`` answers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from bench import records, spec

STATES = ("done", "pruned", "running", "interrupted", "failed", "pending", "not started")


@dataclass(frozen=True)
class RunRow:
    suite: str
    algo: str
    env_id: str
    seed: int
    state: str
    detail: str
    run_dir: Path
    queue: str = ""  # "<task id> <STATE> (<reason>)" while its SLURM task is in the queue

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.algo}/{self.env_id}/seed={self.seed}"


def find_run_dirs(path: Path) -> list[Path]:
    """Run directories at or below ``path`` (a results root, a suite folder or a single run), plus the runs of
    the sweeps launched there (``<suite>/sweep.yaml``) that have no directory yet."""
    path = Path(path)
    if (path / "config.yaml").exists() or path.name.startswith("seed="):
        return [path]
    found = {config.parent for config in path.glob("**/seed=*/config.yaml")}
    found |= {marker.parent for marker in path.glob("**/seed=*/DONE")}
    for suite_dir in {resolved.parent for resolved in [*path.glob(spec.SPEC_FILE), *path.glob(f"*/{spec.SPEC_FILE}")]}:
        found |= {suite_dir / run for run in spec.read_resolved_runs(suite_dir)}
    return sorted(found)


def row_for(run_dir: Path) -> RunRow:
    """Identity from the directory layout results/<suite>/<algo>/<env_id>/seed=<k>."""
    run_dir = Path(run_dir)
    status = records.run_status(run_dir)
    detail = status.detail
    if status.state == "done":
        try:
            summary = records.read_json(run_dir / "summary.json")
            detail = f"final return {summary['final_eval_return']:.1f}, {summary.get('resumes', 0)} resume(s)"
        except (OSError, ValueError, KeyError):
            detail = "summary.json unreadable"
    elif status.state == "running":
        detail = _progress(run_dir)
    seed = int(run_dir.name.split("=", 1)[1]) if run_dir.name.startswith("seed=") else -1
    return RunRow(run_dir.parents[2].name, run_dir.parents[1].name, run_dir.parent.name, seed, status.state,
                  detail, run_dir)


def _progress(run_dir: Path) -> str:
    """"step 1200/5000 on <host>" from the heartbeat in attempts.json and the budget in config.yaml."""
    attempts = records.read_attempts(run_dir)
    config = records.read_config(run_dir) or {}
    if not attempts:
        return ""
    total = config.get("protocol", {}).get("total_steps", "?")
    return f"step {attempts[-1].get('end_step', 0)}/{total} on {attempts[-1].get('host', '?')}"


def rows_for(run_dirs: Iterable[Path]) -> list[RunRow]:
    """Rows with the queue state joined in: a run not started whose task waits in the queue is "pending"."""
    from bench import slurm

    rows = [row_for(run_dir) for run_dir in run_dirs]
    queues = {suite_dir: slurm.queue_states(suite_dir) for suite_dir in {row.run_dir.parents[2] for row in rows}}
    joined = []
    for row in rows:
        queue = queues[row.run_dir.parents[2]].get(f"{row.algo}/{row.env_id}/seed={row.seed}", "")
        state, detail = row.state, row.detail
        if queue and row.state == "not started":  # its task is queued, or started but has not claimed the run yet
            state, detail = ("running", "task starting") if queue.split()[1] == "RUNNING" else ("pending", detail)
        joined.append(replace(row, queue=queue, state=state, detail=detail))
    return joined


def totals(rows: Iterable[RunRow]) -> dict[tuple[str, str], Counter]:
    """Counts of each state per (algorithm, environment)."""
    table: dict[tuple[str, str], Counter] = {}
    for row in rows:
        table.setdefault((row.algo, row.env_id), Counter())[row.state] += 1
    return dict(sorted(table.items()))
