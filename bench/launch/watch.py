"""`bench status --watch`: the running runs' last evaluation return, env steps/s and ETA, redrawn in place on a
terminal (printed anew in a log file) until no run is running; Ctrl-C stops the watching, never the runs."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable

from rich.console import Console
from rich.live import Live
from rich.table import Table

from algorithms.config import ConfigError
from bench.jobs import RunDir
from bench.launch import status


def watch_runs(list_runs: Callable[[], Iterable[RunDir]], interval_s: float, console: Console) -> int:
    if interval_s <= 0:
        raise ConfigError(f"--watch {interval_s:g}: the refresh interval must be > 0 seconds")
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    try:
        with live if live is not None else contextlib.nullcontext():
            for snapshot in status.watch(list_runs, interval_s):
                table = live_table(snapshot)
                if live is not None:
                    live.update(table, refresh=True)
                else:
                    console.print(table)
    except KeyboardInterrupt:
        console.print("stopped watching (the runs go on)", highlight=False)
        return 0
    console.print("no run is running: stopped watching", highlight=False)
    return 0


def live_table(snapshot: status.Snapshot) -> Table:
    counts = ", ".join(f"{count} {state}" for state, count in snapshot.counts.items() if count)
    table = Table(title=f"running: {len(snapshot.live)} ({counts or 'no runs'})")
    for column in ("run", "step", "last eval return", "env steps/s", "ETA", "host"):
        table.add_column(column, justify="left" if column in ("run", "host") else "right")
    for row in snapshot.live:
        total = f"/{row.total:,}" if row.total is not None else ""
        last_eval = f"{row.last_eval[1]:.1f} (step {row.last_eval[0]:,})" if row.last_eval else "-"
        table.add_row(row.name, f"{row.step:,}{total}", last_eval, f"{row.sps:,.0f}" if row.sps else "-",
                      duration(row.eta_s), row.host)
    return table


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"
