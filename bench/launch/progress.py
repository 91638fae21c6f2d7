"""Live progress of a sweep (rich): an overall bar plus one line per active run, and the final table.

On a terminal the bars redraw in place; in a log file (CI, SLURM output) rich does not animate, so there is no
bar, and every run's start, evaluations and end are printed as plain lines instead: one line per run per
evaluation, checkpoints only when asked (``verbose``), no padding to the console width. :func:`event_line` is the
same wording for SLURM task logs.
"""

from __future__ import annotations

import math
import re
import sys
import time
from typing import Any, Sequence, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from bench.jobs import Outcome, run_name


def command_console() -> Console:
    """The console of a `bench` command: a terminal's own width; a log file (CI, SLURM, ``> log``) a wide fixed
    width so that run names are not cut, written without the spaces rich pads lines with."""
    if sys.stdout.isatty():
        return Console(log_path=False)
    return Console(log_path=False, width=150, file=_Unpadded(sys.stdout))


class _Unpadded:
    """A text stream that drops the spaces before each line end (rich pads tables and titles to their width)."""

    _PADDING = re.compile(r" +(?=\n)")

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(self._PADDING.sub("", text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()


class SweepProgress:
    def __init__(self, n_jobs: int, total_steps: int, console: Console | None = None, verbose: bool = False) -> None:
        self.console = console or Console()
        self.plain = not self.console.is_terminal
        self.verbose = verbose
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
        if not self.plain:  # a log file gets the lines, not a bar drawn once at the end
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def handle(self, event: dict[str, Any]) -> None:
        kind, job = event["event"], event["job"]
        if kind == "start":
            self.tasks[job] = self.progress.add_task(job, total=event["total"], completed=event.get("step", 0),
                                                     sps="", last_eval="")
        elif kind == "progress" and job in self.tasks:
            self.progress.update(self.tasks[job], completed=event["step"], sps=f"{event['sps']:.0f} sps")
        elif kind == "eval" and job in self.tasks:
            self.progress.update(self.tasks[job], completed=event["step"], last_eval=f"eval {event['return']:.1f}")
        elif kind in ("end", "skipped"):
            if job in self.tasks:
                self.progress.remove_task(self.tasks.pop(job))
            self.progress.advance(self.overall)
        line = event_line(event, self.verbose)
        if line is not None and (self.plain or kind in LINES_ON_A_TERMINAL):
            self._say(line)

    def _say(self, text: str) -> None:
        if self.plain:
            self.console.print(f"{time.strftime('%H:%M:%S')} {text}", highlight=False, soft_wrap=True)
        else:
            self.console.log(text)


LINES_ON_A_TERMINAL = ("notice", "end", "skipped")  # the bars show the rest


def event_line(event: dict[str, Any], verbose: bool = False) -> str | None:
    """One readable line for a run's event (rich markup), or None for events that get no line (progress ticks;
    checkpoints unless ``verbose``). Used by the live display and by SLURM task logs."""
    kind, job = event["event"], event.get("job", "")
    if kind == "start":
        return f"start  {job}" + (f" (resumed at step {event['step']})" if event.get("step") else "")
    if kind == "notice":
        return f"[yellow]note[/]   {job}: {event['message']}"
    if kind == "checkpoint":
        return f"ckpt   {job} step {event['step']} ({event['seconds']:.2f} s)" if verbose else None
    if kind == "eval":
        return f"eval   {job} step {event['step']}: return {event['return']:.1f}"
    if kind == "skipped":
        return f"skip   {job} (already DONE)"
    if kind == "end":
        return _end_line(job, event["summary"])
    return None


def _end_line(job: str, summary: dict[str, Any]) -> str:
    status = summary.get("status")
    if status == Outcome.DONE:
        return (f"[green]done[/]   {job}: final return {summary['final_eval_return']:.1f} "
                f"in {summary['wall_time_s']:.0f} s")
    if status == Outcome.INTERRUPTED:
        return f"[yellow]stop[/]   {job}: {summary.get('detail', 'not started')}"
    if status == Outcome.BUSY:
        return f"[yellow]busy[/]   {job}: running in another process; left alone"
    if status == Outcome.PRUNED:
        return f"pruned {job}: {summary.get('detail', '')}".rstrip(": ")
    return f"[red]FAILED[/] {job}: {summary.get('error', '')}"


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
