"""The run directory: layout, writers and readers. It is the single source of truth about a run.

    results/<suite>/<algo>/<env_id>/seed=<k>/
        config.yaml     resolved config (algorithm + protocol + identity), written before training starts
        manifest.json   versions, git commit, host, CPU/GPU, start and end times
        train.csv       append-only training log, fixed columns, one row every `log_every` env steps
        eval.csv        append-only evaluation log, fixed columns, one row per scheduled evaluation
        summary.json    final/best eval return, wall-clock, speed, peak memory, resumes, status
        error.txt       traceback of a failed run
        attempts.json   one entry per attempt (start, last sign of life, steps, outcome)
        run.log         notices: resumes, fallbacks, dropped rows
        RUNNING         host and pid of the process running it now
        checkpoint.json, ckpt/, replay/   see bench.checkpoint
        DONE            written last: the run finished and every file above is complete

docs/results-format.md describes the columns for users.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

RESULTS_ENV_VAR = "BENCH_RESULTS_DIR"
SNAPSHOT_INFO = "SNAPSHOT.json"  # beside the packages in a sweep's code snapshot (bench.slurm)
DONE_FILE = "DONE"
ERROR_FILE = "error.txt"
PRUNED_FILE = "PRUNED"  # a tuning trial's pruner stopped the run: final, like DONE (holds the reason)

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
        # float() first: NumPy 2 scalars are float subclasses whose repr is "np.float64(1.5)"
        return "nan" if math.isnan(value) else repr(float(value))
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


SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: ~10x faster when reports read many runs


def read_config(directory: Path) -> dict[str, Any] | None:
    """The run's config.yaml, or None when there is none or it cannot be parsed (then the run restarts)."""
    try:
        data = yaml.load((Path(directory) / "config.yaml").read_text(), Loader=SAFE_LOADER)
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


IDENTITY_SECTIONS = ("suite", "algo", "env_id", "seed", "protocol", "agent")  # not "execution": threads etc.


def config_differences(on_disk: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """``key: on disk X, requested Y`` for every differing leaf of the sections that define the experiment."""
    left = _flatten({key: on_disk.get(key) for key in IDENTITY_SECTIONS})
    right = _flatten({key: requested.get(key) for key in IDENTITY_SECTIONS})
    return [f"{key}: on disk {left.get(key)!r}, requested {right.get(key)!r}"
            for key in sorted(set(left) | set(right)) if left.get(key) != right.get(key)]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


RECORD_FILES = ("config.yaml", "manifest.json", "eval.csv", "train.csv", "summary.json", ERROR_FILE, DONE_FILE,
                PRUNED_FILE, "attempts.json", "run.log", "checkpoint.json")  # not RUNNING: that is the live owner's
RECORD_DIRS = ("ckpt", "replay")


def clear_run(directory: Path) -> None:
    """Remove everything a previous attempt wrote, to start over (only what this harness writes; anything
    else a user put there stays)."""
    for name in RECORD_FILES:
        (directory / name).unlink(missing_ok=True)
    for name in RECORD_DIRS:
        shutil.rmtree(directory / name, ignore_errors=True)


def remove_finished_state(directory: Path) -> None:
    """Drop what only a resume needs (the replay data: GBs for large tasks; the previous checkpoint).
    The final agent state stays in ckpt/last.pt."""
    shutil.rmtree(Path(directory) / "replay", ignore_errors=True)
    (Path(directory) / "ckpt" / "prev.pt").unlink(missing_ok=True)


def note(directory: Path, message: str) -> None:
    with open(Path(directory) / "run.log", "a") as handle:
        handle.write(f"{now_iso()} {message}\n")


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
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", newline="") as handle:
            csv.writer(handle).writerows([header, *kept])
        os.replace(tmp, path)
    return after, malformed


def _row_step(row: list[str], n_columns: int) -> int | None:
    if len(row) != n_columns:
        return None
    try:
        return int(row[0])
    except ValueError:
        return None


# Attempts and liveness -----------------------------------------------------------------------------
def read_attempts(directory: Path) -> list[dict[str, Any]]:
    try:
        return json.loads((Path(directory) / "attempts.json").read_text())
    except (OSError, ValueError):
        return []


def write_attempts(directory: Path, attempts: list[dict[str, Any]]) -> None:
    write_json(Path(directory) / "attempts.json", attempts)  # type: ignore[arg-type]


def attempts_wall_time(attempts: list[dict[str, Any]]) -> float:
    """Seconds of all attempts, each from its start to its last sign of life (work lost to a kill included)."""
    return sum(max(0.0, a["last_alive"] - a["started"]) for a in attempts)


def slurm_task_id() -> str | None:
    """``<array job>_<task>`` (or the plain job id) when running inside a SLURM job; it survives requeues."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def claim(directory: Path) -> bool:
    """Take the run for this process (O_EXCL, so two launchers cannot both take it); a lock left by a dead
    process is taken over, and so is one of an earlier attempt of this same SLURM job (requeued, perhaps onto
    another node: SLURM runs one instance of a job at a time). False if a live process holds it."""
    lock = Path(directory) / "RUNNING"
    slurm_job = slurm_task_id()
    owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": slurm_job}).encode()
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if is_running(directory) and not (slurm_job and _lock_owner(directory).get("slurm_job") == slurm_job):
                return False
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "wb") as handle:
            handle.write(owner)
        return True
    return False


def release(directory: Path) -> None:
    (Path(directory) / "RUNNING").unlink(missing_ok=True)


STALE_AFTER_S = 900  # a run on another host with no sign of life for this long is taken as dead


def is_running(directory: Path) -> bool:
    """True if a live process holds the run: same host and its pid exists, or another host and the run
    showed a sign of life recently (attempts.json is touched at every log row and checkpoint)."""
    owner = _lock_owner(directory)
    if not owner:
        return False
    if owner.get("host") == socket.gethostname():
        return _pid_alive(int(owner.get("pid", -1)))
    heartbeat = Path(directory) / "attempts.json"
    return heartbeat.exists() and time.time() - heartbeat.stat().st_mtime < STALE_AFTER_S


def _lock_owner(directory: Path) -> dict[str, Any]:
    try:
        owner = json.loads((Path(directory) / "RUNNING").read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


# Status -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunStatus:
    state: str  # "done" | "pruned" | "running" | "failed" | "interrupted" | "not started"
    detail: str = ""


def run_status(directory: Path) -> RunStatus:
    directory = Path(directory)
    if (directory / DONE_FILE).exists():
        return RunStatus("done")
    if (directory / PRUNED_FILE).exists():
        return RunStatus("pruned", (directory / PRUNED_FILE).read_text().strip())
    if is_running(directory):
        return RunStatus("running")
    if (directory / ERROR_FILE).exists():
        lines = [line for line in (directory / ERROR_FILE).read_text().splitlines() if line.strip()]
        return RunStatus("failed", lines[-1] if lines else "")
    if (directory / "config.yaml").exists():
        step = _checkpoint_step(directory)
        return RunStatus("interrupted", f"checkpoint at step {step}" if step is not None else "no checkpoint")
    return RunStatus("not started")


def _checkpoint_step(directory: Path) -> int | None:
    try:
        return int(read_json(directory / "checkpoint.json")["step"])
    except (OSError, ValueError, KeyError):
        return None


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
    snapshot = Path(where).parent / SNAPSHOT_INFO
    if path is None and snapshot.exists():  # a sweep's code snapshot: not a checkout, but it knows its source
        try:
            return json.loads(snapshot.read_text())["git"]
        except (OSError, ValueError, KeyError):
            return {"commit": None, "dirty": None}
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
        "package_dir": str(Path(__file__).resolve().parent.parent),  # a sweep snapshot for SLURM jobs
        "start_time": now_iso(),
        "end_time": None,
    }
