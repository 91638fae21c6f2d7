"""Whether a DONE run's files agree with each other: the summary's final evaluation against the last row of the
evaluation log, and every file a finished run needs present and parseable.

A DONE marker only says that training reached its end once; a file damaged or edited afterwards would otherwise be
reported as if nothing had happened. `bench status`, `bench collect` and `bench report` all ask here, so a run they
disagree about cannot exist. Messages name the file (by its name inside the run folder) and the discrepancy.
"""

from __future__ import annotations

import csv
import math
from typing import Any, Mapping

from bench.jobs import RunDir, as_run_dir, read_json

STEP, RETURN = "step", "eval/return_mean"
REQUIRED_FILES = (RunDir.CONFIG, RunDir.SUMMARY, RunDir.EVAL_LOG)


class DamagedLog(ValueError):
    """An evaluation log that cannot be read as a finished run's log; the message says where."""


def verify_done(run: RunDir | Any) -> list[str]:
    """The discrepancies of a DONE run's files, one line each; [] when they agree."""
    run = as_run_dir(run)
    missing = [f"{name} missing" for name in REQUIRED_FILES if not run.file(name).exists()]
    if missing:
        return missing
    problems = [] if run.read_config() is not None else [f"{RunDir.CONFIG} is not a valid YAML mapping"]
    summary = _read_summary(run, problems)
    try:
        last = last_evaluation(run.eval_log)
    except DamagedLog as error:
        return problems + [f"{RunDir.EVAL_LOG}: {error}"]
    if summary is not None:
        problems += summary_disagreements(summary, last)
    return problems


def _read_summary(run: RunDir, problems: list[str]) -> Mapping[str, Any] | None:
    try:
        summary = read_json(run.summary_file)
    except (OSError, ValueError) as error:
        problems.append(f"{RunDir.SUMMARY} is not valid JSON ({error})")
        return None
    if not isinstance(summary, dict):
        problems.append(f"{RunDir.SUMMARY} is not a JSON object")
        return None
    return summary


def summary_disagreements(summary: Mapping[str, Any], last: tuple[int, float] | None) -> list[str]:
    """Where ``summary`` (summary.json) and the last evaluation ``(step, return)`` of eval.csv disagree."""
    if last is None:
        return [f"{RunDir.EVAL_LOG} holds no evaluation, {RunDir.SUMMARY} reports a final return"]
    step, value = last
    problems = []
    final_return = _number(summary.get("final_eval_return"))
    if final_return is None:
        problems.append(f"{RunDir.SUMMARY} has no numeric final_eval_return")
    elif not _same(final_return, value):
        problems.append(f"{RunDir.SUMMARY} final_eval_return {final_return:.6g} but {RunDir.EVAL_LOG}'s last row "
                        f"(step {step}) holds {value:.6g}")
    final_step = _number(summary.get("final_eval_step"))
    if final_step is not None and int(final_step) != step:
        problems.append(f"{RunDir.SUMMARY} final_eval_step {int(final_step)} but {RunDir.EVAL_LOG} ends at step "
                        f"{step}")
    return problems


def last_evaluation(path) -> tuple[int, float] | None:
    """(step, return) of the log's last row; None for a log with a header and no row. A finished run's log is
    whole, so any row cut short, non-numeric or out of order raises :class:`DamagedLog`."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DamagedLog(str(error)) from None
    if not rows:
        raise DamagedLog("empty (no header)")
    header = rows[0]
    if STEP not in header or RETURN not in header:
        raise DamagedLog(f"header lacks {STEP!r} or {RETURN!r}")
    step_at, return_at = header.index(STEP), header.index(RETURN)
    last, previous_step = None, None
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DamagedLog(f"line {line} has {len(row)} fields, the header {len(header)}")
        try:
            step, value = int(float(row[step_at])), float(row[return_at])
        except ValueError:
            raise DamagedLog(f"line {line} is not numeric") from None
        if previous_step is not None and step <= previous_step:
            raise DamagedLog(f"line {line}: step {step} does not follow {previous_step}")
        last, previous_step = (step, value), step
    return last


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _same(a: float, b: float) -> bool:
    """Equal up to the rounding of a float written to text and read back (both sides are written with repr)."""
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
