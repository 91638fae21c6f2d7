"""Run directories -> two tidy tables: one row per evaluation (`evals`) and one row per run (`runs`).

Every run found below the given folders is read, finished or not: an incomplete run (interrupted, still
running, failed) contributes its evaluations up to its last complete eval row and is marked
``complete=False``. A run whose files cannot be read is skipped, and the reason, naming the file, is
returned in ``skipped`` so the caller can warn. A DONE run whose summary and evaluation log disagree
(bench.records.verify, the check `bench status` makes) is left out too, its discrepancy in ``suspect``, unless
``include_suspect`` keeps it (status "suspect"). Nothing here writes into run directories.
"""

from __future__ import annotations

import csv
import json
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from algorithms import config as cfg
from bench.jobs import RunDir, RunState, read_json
from bench.plan.presets import departures
from bench.plan.protocols import Protocol
from bench.records.discover import find_run_dirs
from bench.records.state import run_status
from bench.records.verify import summary_disagreements

RETURN = "eval/return_mean"
RETURN_STD = "eval/return_std"
EVAL_REQUIRED = ("step", "wall_time_s", RETURN)

EVAL_TABLE_COLUMNS = ["label", "variant", "suite", "algo", "env_id", "seed", "step", "wall_time_s", "return",
                      "return_std", "status", "complete"]
RUN_TABLE_COLUMNS = ["label", "variant", "suite", "algo", "env_id", "seed", "status", "complete", "preset",
                     "protocol_name", "protocol", "planned_steps", "planned_updates", "updates", "changed", "last_step",
               "eval_points", "final_return", "wall_time_s", "sps", "updates_per_s", "rss_peak_mb",
               "cuda_alloc_peak_mb", "cuda_reserved_peak_mb", "resumes", "run_dir"]


class UnreadableRun(Exception):
    """A run directory whose records cannot be parsed; the message names the file."""


class SuspectRun(Exception):
    """A DONE run whose files disagree with each other; the message names the run, the file and the discrepancy."""


@dataclass
class Collected:
    evals: pd.DataFrame
    runs: pd.DataFrame
    skipped: list[str] = field(default_factory=list)
    suspect: list[str] = field(default_factory=list)  # DONE runs whose files disagree (left out unless asked)

    def save(self, folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        evals_path, runs_path = folder / "evals.parquet", folder / "runs.parquet"
        self.evals.to_parquet(evals_path, index=False)
        self.runs.to_parquet(runs_path, index=False)
        return evals_path, runs_path


def collect(paths: Iterable[Path | str], include_suspect: bool = False) -> Collected:
    """Read every run below ``paths`` (results roots, suite folders or single runs)."""
    eval_columns: dict[str, list] = {column: [] for column in EVAL_TABLE_COLUMNS}
    run_rows, skipped, suspect = [], [], []
    for run_dir in _unique_run_dirs(paths):
        try:
            evals, run = read_run(run_dir, include_suspect)
        except UnreadableRun as error:
            skipped.append(str(error))
            continue
        except SuspectRun as error:
            suspect.append(str(error))
            continue
        if run["status"] == RunState.SUSPECT:
            suspect.append(run["problems"])
        for column in EVAL_TABLE_COLUMNS:
            value = evals.get(column, run.get(column))
            eval_columns[column].extend(value if isinstance(value, list) else [value] * len(evals["step"]))
        run_rows.append(run)
    evals = pd.DataFrame(eval_columns).astype({"seed": "int64", "step": "int64", "complete": bool})
    runs = pd.DataFrame(run_rows, columns=RUN_TABLE_COLUMNS)
    _label_variants(evals, runs)
    return Collected(evals, runs, skipped, suspect)


def train_metrics(runs: pd.DataFrame) -> pd.DataFrame:
    """The training logs (train.csv: losses, temperature, speed, memory) of the runs in a ``runs`` table, one row
    per logged step with the run's label, algo, env_id and seed in front. Columns an algorithm does not log are
    NaN; a row cut short by a kill is dropped; an unreadable log is skipped with a warning naming the file."""
    frames = []
    for run in runs.itertuples():
        path = RunDir(run.run_dir).train_log
        try:
            text = path.read_text()
            complete_lines = text[:text.rfind("\n") + 1]  # a line without its newline was cut short by a kill
            frame = pd.read_csv(io.StringIO(complete_lines))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            warnings.warn(f"{path}: skipped ({error})", stacklevel=2)
            continue
        frames.append(frame.assign(label=run.label, algo=run.algo, env_id=run.env_id, seed=run.seed))
    if not frames:
        return pd.DataFrame(columns=["label", "algo", "env_id", "seed", "step"])
    table = pd.concat(frames, ignore_index=True)
    identity = ["label", "algo", "env_id", "seed"]
    return table[identity + [column for column in table.columns if column not in identity]]


def _unique_run_dirs(paths: Iterable[Path | str]) -> list[RunDir]:
    found: dict[Path, None] = {}
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such results folder: {path}")
        for run in find_run_dirs(path):
            found.setdefault(run.path.resolve(), None)
    return [RunDir(path) for path in found]


def read_run(run_dir: Path | RunDir, include_suspect: bool = False) -> tuple[dict[str, list], dict]:
    """The eval columns (step, wall_time_s, return, return_std) and the one-row summary of one run directory.
    A DONE run whose files disagree raises :class:`SuspectRun`; with ``include_suspect`` it is read with status
    "suspect" and the discrepancy in the row's ``problems``."""
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    config = _read_config(run_dir)
    status = run_status(run_dir).state
    complete = status == RunState.DONE
    evals = _read_evals(run_dir.eval_log)
    identity = {"suite": config.get("suite", run_dir.suite), "algo": config.get("algo", run_dir.algo),
                "env_id": config.get("env_id", run_dir.env_id), "seed": int(config.get("seed", -1))}
    if complete:
        summary = _read_summary(run_dir)
        problems = summary_disagreements(summary, (evals["step"][-1], evals["return"][-1]) if evals["step"] else None)
    else:  # no summary yet: peak memory so far from the training log; speed figures only exist for done runs
        summary, problems = {"mem/rss_peak_mb": _last_train_row(run_dir.train_log).get("mem/rss_peak_mb")}, []
    message = f"{run_dir.path}: {'; '.join(problems)}" if problems else ""
    if problems:
        if not include_suspect:
            raise SuspectRun(message)
        status = RunState.SUSPECT
    has_evals = bool(evals["step"])
    run = {
        **identity, "label": identity["algo"], "variant": "", "status": str(status), "complete": complete,
        "planned_steps": int(config.get("protocol", {}).get("total_steps", 0)) or None,
        "last_step": evals["step"][-1] if has_evals else 0,
        "eval_points": len(evals["step"]),
        "final_return": evals["return"][-1] if has_evals else math.nan,
        "wall_time_s": summary.get("wall_time_s", evals["wall_time_s"][-1] if has_evals else math.nan),
        "sps": summary.get("time/sps", math.nan),
        "updates_per_s": summary.get("time/updates_per_s", math.nan),
        "rss_peak_mb": summary.get("mem/rss_peak_mb", math.nan),
        "cuda_alloc_peak_mb": summary.get("mem/cuda_alloc_peak_mb"),
        "cuda_reserved_peak_mb": summary.get("mem/cuda_reserved_peak_mb"),
        "resumes": summary.get("resumes", 0),
        **_setup(config, summary),
        "run_dir": str(run_dir.path),
        "problems": message,
    }
    for key in ("wall_time_s", "sps", "updates_per_s", "rss_peak_mb", "cuda_alloc_peak_mb", "cuda_reserved_peak_mb"):
        run[key] = math.nan if run[key] in (None, "") else float(run[key])
    return evals, run


def _setup(config: dict, summary: dict) -> dict:
    """What a run was compared under: preset, protocol (its name and every field), gradient updates planned and made,
    and the config fields that differ from the algorithm's defaults (its own paper's settings)."""
    protocol = config.get("protocol") or {}
    try:
        planned = cfg.build(Protocol, protocol, where="protocol").planned_updates
    except (cfg.ConfigError, TypeError):
        planned = None
    return {"preset": config.get("preset") or "", "protocol_name": config.get("protocol_name") or "",
            "protocol": json.dumps(protocol, sort_keys=True), "planned_updates": planned,
            "updates": summary.get("updates"), "changed": _changed(config)}


def _changed(config: dict) -> str:
    """``key=value; ...`` of the fields that differ from the algorithm's defaults; "?" for an algorithm that is not
    registered here (a plugin the report was not given)."""
    try:
        changed = departures(config["algo"], config["env_id"], config.get("agent") or {})
    except (KeyError, cfg.ConfigError):
        return "?"
    return "; ".join(f"{key}={value}" for key, (_, value) in changed.items())


def _read_config(run_dir: RunDir) -> dict:
    config = run_dir.read_config()
    if config is None:
        raise UnreadableRun(f"{run_dir.config_file}: missing or not valid YAML")
    return config


def _read_evals(path: Path) -> dict[str, list]:
    """eval.csv's columns as lists; a row cut short by a kill (the last one) is dropped, anything else wrong
    makes the whole run unreadable."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UnreadableRun(f"{path}: {error}") from error
    if not rows:
        raise UnreadableRun(f"{path}: empty (no header)")
    header = rows[0]
    missing = [column for column in EVAL_REQUIRED if column not in header]
    if missing:
        raise UnreadableRun(f"{path}: missing column(s) {', '.join(missing)}")
    index = {column: header.index(column) for column in (*EVAL_REQUIRED, RETURN_STD) if column in header}
    body = rows[1:]
    if body and len(body[-1]) < len(header):
        body = body[:-1]
    columns: dict[str, list] = {"step": [], "wall_time_s": [], "return": [], "return_std": []}
    for line, row in enumerate(body, start=2):
        try:
            step, wall, value = int(float(row[index["step"]])), float(row[index["wall_time_s"]]), float(row[index[RETURN]])
            std = float(row[index[RETURN_STD]]) if RETURN_STD in index and row[index[RETURN_STD]] else math.nan
        except (ValueError, IndexError) as error:
            raise UnreadableRun(f"{path}: line {line} is not numeric ({error})") from error
        if columns["step"] and step <= columns["step"][-1]:
            raise UnreadableRun(f"{path}: line {line}: step {step} does not increase")
        for column, item in zip(columns, (step, wall, value, std)):
            columns[column].append(item)
    return columns


def _read_summary(run_dir: RunDir) -> dict:
    path = run_dir.summary_file
    try:
        summary = read_json(path)
    except (OSError, ValueError) as error:
        raise UnreadableRun(f"{path}: {error}") from error
    if not isinstance(summary, dict):
        raise UnreadableRun(f"{path}: not a JSON object")
    return summary


def _last_train_row(path: Path) -> dict:
    """Peak memory of an unfinished run comes from its last training-log row (best effort: {} if unreadable)."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    full = [row for row in rows[1:] if len(row) == len(rows[0])] if rows else []
    return dict(zip(rows[0], full[-1])) if full else {}


def _label_variants(evals: pd.DataFrame, runs: pd.DataFrame) -> None:
    """An algorithm run on the same environment in several suites is several variants (different configs or
    code): its runs get the suite as their ``variant`` and the label ``algo (suite)``, so their seeds are never
    pooled. One algorithm spread over suites that each hold different environments keeps its plain name."""
    if runs.empty:
        return
    suites_per_task = runs.groupby(["algo", "env_id"])["suite"].nunique()
    split = set(suites_per_task[suites_per_task > 1].index.get_level_values("algo"))
    for frame in (evals, runs):
        multi = frame["algo"].isin(split)
        frame.loc[multi, "variant"] = frame.loc[multi, "suite"]
        frame.loc[multi, "label"] = frame.loc[multi, "algo"] + " (" + frame.loc[multi, "suite"] + ")"
