"""``manifest.json``: what a run ran on (package versions, git commit, host, CPU/GPU, command, start/end time)."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

import bench
from bench.jobs import now_iso

SNAPSHOT_INFO = "SNAPSHOT.json"  # beside the packages in a sweep's code snapshot (bench.launch.slurm)
PACKAGE_ROOT = Path(bench.__file__).resolve().parent.parent  # the folder holding bench/ and algorithms/
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
    """Commit and dirtiness of the repository holding ``path`` (default: this package; None outside a checkout)."""
    snapshot = PACKAGE_ROOT / SNAPSHOT_INFO
    if path is None and snapshot.exists():  # a sweep's code snapshot: not a checkout, but it knows its source
        try:
            return json.loads(snapshot.read_text())["git"]
        except (OSError, ValueError, KeyError):
            return {"commit": None, "dirty": None}
    where = str(path or PACKAGE_ROOT / "bench")
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
        "package_dir": str(PACKAGE_ROOT),  # a sweep snapshot for SLURM jobs
        "start_time": now_iso(),
        "end_time": None,
    }
