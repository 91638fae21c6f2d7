"""The run directory: layout, writers and readers. It is the single source of truth about a run.

    results/<suite>/<algo>/<env_id>/seed=<k>/
        config.yaml     resolved config (algorithm + protocol + identity), written before training starts
        manifest.json   versions, git commit, host, CPU/GPU, start and end times
        train.csv       append-only training log, fixed columns, one row every `log_every` env steps
        eval.csv        append-only evaluation log, fixed columns, one row per scheduled evaluation
        summary.json    final/best eval return, wall-clock, speed, peak memory, status
        error.txt       traceback of a failed run
        DONE            written last: the run finished and every file above is complete

docs/results-format.md describes the columns for users.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

RESULTS_ENV_VAR = "BENCH_RESULTS_DIR"
DONE_FILE = "DONE"
ERROR_FILE = "error.txt"

EVAL_COLUMNS = (
    "step", "wall_time_s", "eval/return_mean", "eval/return_std", "eval/return_min", "eval/return_max",
    "eval/length_mean", "eval/episodes",
)
TRAIN_COLUMNS = (
    "step", "wall_time_s", "train/episode_return", "train/episode_length", "train/episodes", "updates",
    "time/sps", "time/env_s", "time/act_s", "time/update_s", "time/eval_s", "mem/rss_peak_mb",
)


def default_results_root() -> Path:
    return Path(os.environ.get(RESULTS_ENV_VAR, "results"))


def run_dir(results_root: Path | str, suite: str, algo: str, env_id: str, seed: int) -> Path:
    return Path(results_root) / suite / algo / env_id / f"seed={seed}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class CsvLog:
    """Append-only CSV with a fixed header; each row is flushed so a killed run loses at most one line."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._handle = open(self.path, "a", newline="")
        self._writer = csv.writer(self._handle)
        if new:
            self._writer.writerow(self.columns)
            self._handle.flush()

    def append(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"{self.path.name}: columns {sorted(unknown)} are not in the header {self.columns}")
        self._writer.writerow([_format(row.get(column)) for column in self.columns])
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write via a temporary file and rename, so readers never see a half-written file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def clear_run(directory: Path) -> None:
    """Remove the record files of an unfinished attempt before starting it again (only files this module
    writes; anything else a user put there stays)."""
    names = ("config.yaml", "manifest.json", "eval.csv", "train.csv", "summary.json", ERROR_FILE, DONE_FILE)
    for name in names:
        (directory / name).unlink(missing_ok=True)


# Status -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunStatus:
    state: str  # "done" | "failed" | "incomplete" | "not started"
    detail: str = ""


def run_status(directory: Path) -> RunStatus:
    directory = Path(directory)
    if (directory / DONE_FILE).exists():
        return RunStatus("done")
    if (directory / ERROR_FILE).exists():
        lines = [line for line in (directory / ERROR_FILE).read_text().splitlines() if line.strip()]
        return RunStatus("failed", lines[-1] if lines else "")
    if (directory / "config.yaml").exists():
        return RunStatus("incomplete")
    return RunStatus("not started")


# Manifest -----------------------------------------------------------------------------------------
PACKAGES = ("diffrl-bench", "torch", "gymnasium", "mujoco", "numpy", "pandas", "rliable", "submitit", "optuna")


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(path: Path | None = None) -> dict[str, Any]:
    """Commit and dirtiness of the repository holding this package (None outside a checkout)."""
    where = str(path or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "device": device,
        "gpu_name": None,
        "cuda": torch.version.cuda,
    }
    if torch.cuda.is_available() and device.startswith("cuda"):
        info["gpu_name"] = torch.cuda.get_device_name(torch.device(device))
    return info


def manifest(device: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    return {
        "versions": package_versions(),
        "git": git_state(),
        "hardware": hardware(device),
        "argv": list(argv if argv is not None else sys.argv),
        "start_time": now_iso(),
        "end_time": None,
    }
