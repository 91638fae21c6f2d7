"""A full disk stops a run with the real reason and the path, leaves no temporary file and damages nothing, and the
run resumes bit-identically once there is space; a damaged replay file starts the run over with a notice, and
every attempt stays on record."""

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.jobs import RunDir
from bench.records.state import run_status
from bench.train.run import run_one
from tests.helpers import bench_cli, bench_env
from tests.launch.test_fault_isolation import (SWEEP, assert_same_tensors, eval_returns, final_agent, has_checkpoint,
                                               wait_for)
from tests.train.test_resume import column, interrupted_run

RUN = [*SWEEP, "--seeds", "1", "--workers", "1"]


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs: a disk that fills up in a moment. Needs root (the tests run as root in CI)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {mount_point} (needs root): {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk is full."""
    ballast = disk / "ballast"
    chunk = b"\xa5" * 65536
    with open(ballast, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    with open(ballast, "ab", buffering=0) as handle:  # the last partial page
        try:
            while True:
                handle.write(b"\xa5" * 512)
        except OSError:
            pass
    return ballast


def test_a_full_disk_is_named_leaves_no_temporary_file_and_the_run_resumes_bit_identically(small_disk, tmp_path):
    results = small_disk / "results"
    directory = results / "full" / "sac" / "Pendulum-v1" / "seed=0"
    process = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", *RUN, "--suite", "full"],
                               env=bench_env(results), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: has_checkpoint(directory), what="a first checkpoint")
    ballast = fill(small_disk)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 1, output
    assert "Traceback" not in output
    # The sweep's end names the run, the reason and the file, on one line.
    assert any(line.startswith(f"  sac/Pendulum-v1/seed=0: disk full at {directory}/")
               for line in output.splitlines()), output
    error_text = (directory / "error.txt").read_text()
    assert error_text.splitlines()[-1].startswith(f"disk full at {directory}")
    assert not list(results.rglob("*.tmp"))
    status = run_status(directory)
    assert status.state == "failed" and status.detail.startswith("disk full at ")
    attempt = json.loads((directory / "attempts.json").read_text())[-1]
    assert attempt["outcome"] == "failed" and attempt["cause"].startswith("disk full at ")
    step = RunDir(directory).checkpoint_step()
    assert step is not None and step >= 100

    ballast.unlink()
    resumed = bench_cli("run", *RUN, "--suite", "full", results_dir=results)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed at step {step}" in resumed.stdout
    reference = bench_cli("run", *RUN, "--suite", "ref", results_dir=tmp_path / "results")
    assert reference.returncode == 0, reference.stdout + reference.stderr
    untouched = tmp_path / "results" / "ref" / "sac" / "Pendulum-v1" / "seed=0"
    assert eval_returns(directory) == eval_returns(untouched)
    assert_same_tensors(final_agent(directory), final_agent(untouched))


def test_a_damaged_replay_file_starts_over_with_a_notice_naming_it_and_every_attempt_stays_on_record(tmp_path):
    job, directory = interrupted_run(tmp_path)
    damaged = directory / "replay" / "obs.npy"
    with open(damaged, "r+b") as handle:
        handle.truncate(damaged.stat().st_size // 2)
    events = []
    summary = run_one(job, events.append)
    assert summary["status"] == "done" and summary["resumes"] == 0
    notices = [event["message"] for event in events if event["event"] == "notice"]
    assert any(f"replay file {damaged}: unreadable" in n and "starting over from step 0" in n for n in notices)
    assert [int(s) for s in column(directory / "eval.csv", "step")] == list(range(0, 1201, 200))
    attempts = json.loads((directory / "attempts.json").read_text())
    assert [a["outcome"] for a in attempts] == ["interrupted", "done"]
    assert [a["start_step"] for a in attempts] == [0, 0]
    assert f"replay file {damaged}" in (directory / "run.log").read_text()


def test_a_checkpoint_with_changed_bytes_is_caught_by_its_checksum_and_the_previous_one_is_used(tmp_path):
    """torch.load reads a checkpoint with a changed block of bytes without complaint (and with other values)."""
    import torch

    from bench.train import checkpoint

    checkpoint.save(tmp_path, {"step": 100, "weights": torch.zeros(4096)})
    checkpoint.save(tmp_path, {"step": 200, "weights": torch.ones(4096)})
    last = tmp_path / "ckpt" / "last.pt"
    data = bytearray(last.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(range(64))
    last.write_bytes(bytes(data))
    loaded = checkpoint.load(tmp_path)
    assert loaded.state["step"] == 100 and loaded.source.name == "prev.pt"
    assert loaded.notices == ["checkpoint last.pt is unreadable (ValueError: its checksum is not the one recorded "
                              "in checkpoint.json); skipped"]
