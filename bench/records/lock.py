"""Who holds a run: the ``RUNNING`` lock (O_EXCL, so two launchers cannot both take it) and liveness checks."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from bench.jobs import RunDir, as_run_dir

STALE_AFTER_S = 900  # a run on another host with no sign of life for this long is taken as dead


def slurm_task_id() -> str | None:
    """``<array job>_<task>`` (or the plain job id) when running inside a SLURM job; it survives requeues."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def claim(run: RunDir | Path) -> bool:
    """Take the run for this process; a lock left by a dead process is taken over, and so is one of an earlier
    attempt of this same SLURM job (requeued, perhaps onto another node: SLURM runs one instance of a job at a
    time). False if a live process holds it."""
    run = as_run_dir(run)
    slurm_job = slurm_task_id()
    owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": slurm_job}).encode()
    for _ in range(2):
        try:
            fd = os.open(run.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if is_running(run) and not (slurm_job and _lock_owner(run).get("slurm_job") == slurm_job):
                return False
            run.lock_file.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "wb") as handle:
            handle.write(owner)
        return True
    return False


def release(run: RunDir | Path) -> None:
    run = as_run_dir(run)
    run.lock_file.unlink(missing_ok=True)


def release_if_owner(run: RunDir | Path, pid: int) -> None:
    """Remove the lock of a process this host knows to be dead (its parent reaped it), and only that one."""
    run = as_run_dir(run)
    owner = _lock_owner(run)
    if owner.get("host") == socket.gethostname() and owner.get("pid") == pid:
        run.lock_file.unlink(missing_ok=True)


def is_running(run: RunDir | Path) -> bool:
    """True if a live process holds the run: same host and its pid exists, or another host and the run
    showed a sign of life recently (attempts.json is touched at every log row and checkpoint)."""
    run = as_run_dir(run)
    owner = _lock_owner(run)
    if not owner:
        return False
    if owner.get("host") == socket.gethostname():
        return pid_alive(int(owner.get("pid", -1)))
    heartbeat = run.attempts_file
    return heartbeat.exists() and time.time() - heartbeat.stat().st_mtime < STALE_AFTER_S


def _lock_owner(run: RunDir) -> dict[str, Any]:
    try:
        owner = json.loads(run.lock_file.read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def pid_alive(pid: int) -> bool:
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
