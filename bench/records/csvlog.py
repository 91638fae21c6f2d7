"""Append-only CSV logs of a run (train.csv, eval.csv) and their truncation to a checkpoint's step on resume."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.jobs import writing

EVAL_LOG_COLUMNS = (
    "step", "wall_time_s", "eval/return_mean", "eval/return_std", "eval/return_min", "eval/return_max",
    "eval/length_mean", "eval/episodes",
)
TRAIN_LOG_COLUMNS = (
    "step", "wall_time_s", "train/episode_return", "train/episode_length", "train/episodes", "updates",
    "time/sps", "time/env_s", "time/act_s", "time/update_s", "time/eval_s", "mem/rss_peak_mb",
)


class CsvLog:
    """Append-only CSV with a fixed header; each row is flushed so a killed run loses at most one line."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._handle = open(self.path, "a", newline="")
        self._writer = csv.writer(self._handle)
        if new:
            with writing(self.path):
                self._writer.writerow(self.columns)
                self._handle.flush()

    def append(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"{self.path.name}: columns {sorted(unknown)} are not in the header {self.columns}")
        with writing(self.path):
            self._writer.writerow([_format(row.get(column)) for column in self.columns])
            self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        # float() first: NumPy 2 scalars are float subclasses whose repr is "np.float64(1.5)"
        return "nan" if math.isnan(value) else repr(float(value))
    return str(value)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a log as written (text cells; empty for a missing value); [] when the file is absent."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def last_row(path: Path, tail_bytes: int = 65536) -> dict[str, str] | None:
    """The last complete row of a log, read from its end (a live view polls long logs); None without one."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            header = handle.readline().decode()
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(len(header), size - tail_bytes))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    columns = next(csv.reader([header]), [])
    for line in reversed(lines):  # the last line may be cut short by a writer mid-row
        cells = next(csv.reader([line]), [])
        if columns and len(cells) == len(columns) and _row_step(cells, len(columns)) is not None:
            return dict(zip(columns, cells))
    return None


def truncate_csv(path: Path, max_step: int) -> tuple[int, int]:
    """Keep the header and the well-formed rows with ``step <= max_step`` (rewritten atomically).

    Returns (rows dropped past the checkpoint, malformed rows dropped), e.g. a line half-written when the
    process was killed.
    """
    path = Path(path)
    if not path.exists():
        return 0, 0
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return 0, 0
    header, kept, after, malformed = rows[0], [], 0, 0
    for row in rows[1:]:
        step = _row_step(row, len(header))
        if step is None:
            malformed += 1
        elif step > max_step:
            after += 1
        else:
            kept.append(row)
    if after or malformed:
        tmp = path.with_name(path.name + ".tmp")
        try:
            with writing(path), open(tmp, "w", newline="") as handle:
                csv.writer(handle).writerows([header, *kept])
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return after, malformed


def _row_step(row: list[str], n_columns: int) -> int | None:
    if len(row) != n_columns:
        return None
    try:
        return int(row[0])
    except ValueError:
        return None
