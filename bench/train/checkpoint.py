"""Atomic checkpoint files with one previous generation to fall back on.

    <run>/ckpt/last.pt    newest checkpoint (torch.save of the trainer state; the replay data lives in
                          <run>/replay/*.npy and only its fill pointer is in here)
    <run>/ckpt/prev.pt    the one before, used when last.pt is unreadable
    <run>/checkpoint.json step, time and sha256 of last.pt (and the step and sha256 of prev.pt), for `bench status`
                          without loading torch files and to tell a damaged checkpoint from a good one

Writes go to a temporary file that is fsynced and then renamed over the old one, so a kill at any moment
leaves either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.jobs import RunDir, as_run_dir, now_iso, read_json, write_json, writing


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(run: RunDir | Path, state: dict[str, Any]) -> Path:
    run = as_run_dir(run)
    directory = run.checkpoint_dir
    directory.mkdir(parents=True, exist_ok=True)
    last, prev = run.last_checkpoint, run.previous_checkpoint
    tmp = last.with_name(last.name + ".tmp")
    try:
        digest = _write_synced(tmp, last, state)
    except BaseException:
        tmp.unlink(missing_ok=True)  # last.pt and prev.pt are untouched until the new file is complete
        raise
    previous = _recorded(run)
    if last.exists():
        os.replace(last, prev)
    os.replace(tmp, last)
    _fsync_dir(directory)
    write_json(run.checkpoint_info, {"step": state["step"], "saved_at": now_iso(), "bytes": last.stat().st_size,
                                     "sha256": digest, "previous": {key: previous.get(key) for key in
                                                                    ("step", "sha256")}})
    return last


def _recorded(run: RunDir) -> dict[str, Any]:
    try:
        info = read_json(run.checkpoint_info)
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _known_digests(run: RunDir) -> set[str]:
    """The checksums checkpoint.json records for last.pt and prev.pt. A kill between the renames and the rewrite of
    checkpoint.json leaves last.pt unrecorded: it is then skipped and prev.pt (recorded) is used."""
    info = _recorded(run)
    previous = info.get("previous") if isinstance(info.get("previous"), dict) else {}
    return {digest for digest in (info.get("sha256"), previous.get("sha256")) if isinstance(digest, str)}


def _write_synced(tmp: Path, target: Path, state: dict[str, Any]) -> str:
    # Serialised in memory first: torch.save into a file turns a failed write into a RuntimeError that has lost
    # the errno, and "disk full" must be told apart from a bug.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with writing(target), open(tmp, "wb") as handle:
        handle.write(buffer.getbuffer())
        handle.flush()
        os.fsync(handle.fileno())
    return hashlib.sha256(buffer.getbuffer()).hexdigest()


@dataclass
class Loaded:
    state: dict[str, Any] | None
    source: Path | None = None
    notices: list[str] = field(default_factory=list)


def load(run: RunDir | Path) -> Loaded:
    """The newest readable checkpoint whose checksum is the one recorded when it was written (torch.load reads a
    file with changed bytes without complaint); notices say what was skipped and why. Checkpoints written before
    checksums were recorded are loaded unchecked."""
    run = as_run_dir(run)
    notices = []
    known = _known_digests(run)
    for path in (run.last_checkpoint, run.previous_checkpoint):
        if not path.exists():
            continue
        try:
            data = path.read_bytes()
            if known and hashlib.sha256(data).hexdigest() not in known:
                raise ValueError("its checksum is not the one recorded in " + run.checkpoint_info.name)
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
            if not isinstance(state, dict) or "step" not in state:
                raise ValueError("not a checkpoint of this harness")
            return Loaded(state, path, notices)
        except Exception as error:  # noqa: BLE001 - any unreadable file means: try the older one
            notices.append(f"checkpoint {path.name} is unreadable ({type(error).__name__}: {error}); skipped")
    return Loaded(None, None, notices)


def default_interval(total_steps: int, n_envs: int) -> int:
    """Every 5 % of the budget (so a kill loses at most ~5 % of the work), on the n_envs grid."""
    twentieth = -(-total_steps // 20)
    return max(n_envs, -(-twentieth // n_envs) * n_envs)
