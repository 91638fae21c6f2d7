"""`bench report` never leaves a half-written report: it builds in a temporary folder beside the output and renames
it into place, so Ctrl-C (SIGINT) in the middle leaves the previous report whole and says so in one line."""

import signal
import subprocess
import sys
import time

from bench.report.synthetic import write_grid
from tests.helpers import bench_cli, bench_env


def folder_contents(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_ctrl_c_during_report_leaves_the_previous_report_intact(tmp_path):
    results = tmp_path / "results"
    write_grid(results, "s", algos=2, envs=2, seeds=3, points=10)
    out = results / "s" / "report"
    first = bench_cli("report", str(results / "s"), "--normalize", "none", "--reps", "10", results_dir=results)
    assert first.returncode == 0, first.stderr
    before = folder_contents(out)

    # Enough bootstrap replications to still be working when the signal comes.
    process = subprocess.Popen([sys.executable, "-m", "bench.cli", "report", str(results / "s"), "--normalize",
                                "none", "--reps", "200000"], env=bench_env(results), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((results / "s").glob(".report.tmp-*")) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert stderr.strip().splitlines() == [f"interrupted: no report written; {out} is as it was"]
    assert folder_contents(out) == before
    assert sorted(path.name for path in (results / "s").iterdir() if path.name.startswith(".")) == []


def test_report_out_that_is_a_file_is_one_line(tmp_path):
    results = tmp_path / "results"
    write_grid(results, "s", algos=1, envs=1, seeds=1, points=3)
    target = tmp_path / "taken"
    target.write_text("mine\n")
    result = bench_cli("report", str(results / "s"), "--out", str(target), "--normalize", "none",
                       results_dir=results)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: output folder {target}: is a file, not a folder"]
    assert target.read_text() == "mine\n"
