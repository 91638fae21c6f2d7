"""Live progress of a sweep (rich): an overall bar plus one line per active run, and the final table.

On a terminal the bars redraw in place; in a log file (CI, SLURM output) rich does not animate, so every
run's start, evaluations and end are also printed as plain status lines.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from bench.jobs import Outcome, run_name


class SweepProgress:
    def __init__(self, n_jobs: int, total_steps: int, console: Console | None = None) -> None:
        self.console = console or Console()
        self.plain = not self.console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}", style="bold"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[sps]:>9}"),
            TextColumn("{task.fields[last_eval]:>16}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.overall = self.progress.add_task("all runs", total=n_jobs, sps="", last_eval="")
        self.tasks: dict[str, TaskID] = {}
        self.total_steps = total_steps

    def __enter__(self) -> "SweepProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def handle(self, event: dict[str, Any]) -> None:
        kind, job = event["event"], event["job"]
        if kind == "start":
            self.tasks[job] = self.progress.add_task(job, total=event["total"], completed=event.get("step", 0),
                                                     sps="", last_eval="")
            self._line(f"start  {job}" + (f" (resumed at step {event['step']})" if event.get("step") else ""))
        elif kind == "notice":
            self.console.log(f"[yellow]note[/]   {job}: {event['message']}")
        elif kind == "checkpoint":
            self._line(f"ckpt   {job} step {event['step']} ({event['seconds']:.2f} s)")
        elif kind == "progress" and job in self.tasks:
            self.progress.update(self.tasks[job], completed=event["step"], sps=f"{event['sps']:.0f} sps")
        elif kind == "eval" and job in self.tasks:
            self.progress.update(self.tasks[job], completed=event["step"], last_eval=f"eval {event['return']:.1f}")
            self._line(f"eval   {job} step {event['step']}: return {event['return']:.1f}")
        elif kind in ("end", "skipped"):
            self._finish(job, event["summary"], skipped=kind == "skipped")

    def _finish(self, job: str, summary: dict[str, Any], skipped: bool) -> None:
        if job in self.tasks:
            self.progress.remove_task(self.tasks.pop(job))
        self.progress.advance(self.overall)
        status = summary.get("status")
        if skipped:
            self.console.log(f"skip   {job} (already DONE)")
        elif status == Outcome.DONE:
            self.console.log(f"[green]done[/]   {job}: final return {summary['final_eval_return']:.1f} "
                             f"in {summary['wall_time_s']:.0f} s")
        elif status == Outcome.INTERRUPTED:
            self.console.log(f"[yellow]stop[/]   {job}: {summary.get('detail', 'not started')}")
        elif status == Outcome.BUSY:
            self.console.log(f"[yellow]busy[/]   {job}: running in another process; left alone")
        else:
            self.console.log(f"[red]FAILED[/] {job}: {summary.get('error', '')}")

    def _line(self, text: str) -> None:
        if self.plain:
            self.console.log(text)


OUTCOME_STYLE = {Outcome.DONE: "green", Outcome.SKIPPED: "cyan", Outcome.FAILED: "red", Outcome.INTERRUPTED: "yellow"}


def summary_table(results: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="bench run: summary")
    for column in ("run", "status", "steps", "final return", "best return", "wall (s)", "sps"):
        table.add_column(column, justify="left" if column in ("run", "status") else "right")
    for summary in results:
        run = run_name(summary["algo"], summary["env_id"], summary["seed"])
        status = str(summary.get("status", "?"))
        style = OUTCOME_STYLE.get(status, "")
        table.add_row(run, f"[{style}]{status}[/]" if style else status, _num(summary.get("total_steps"), "d"),
                      _num(summary.get("final_eval_return")), _num(summary.get("best_eval_return")),
                      _num(summary.get("wall_time_s"), ".0f"), _num(summary.get("time/sps"), ".0f"))
    return table


def _num(value: Any, fmt: str = ".1f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)
