"""Filesystem faults around the results and report folders, met through the real `bench` command: each gives one
line naming the path and what is wrong, exit status 2, no traceback, and nothing is written."""

import os

import pytest

from bench.report.synthetic import write_run
from tests.helpers import bench_cli

GRID = ["--algos", "sac", "--envs", "Pendulum", "--preset", "none", "--protocol", "quick", "--steps", "300",
        "--threads", "1", "--device", "cpu"]


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


@pytest.fixture
def suite(tmp_path):
    write_run(tmp_path / "results", "s", "sac", "Hopper-v5", 0, [0, 100], [0.0, 1.0])
    return tmp_path / "results" / "s"


def test_run_into_a_results_root_that_is_a_file(tmp_path, a_file):
    line = one_error_line(bench_cli("run", *GRID, "--results-dir", str(a_file), results_dir=tmp_path))
    assert line == f"error: results folder {a_file}/default: is a file, not a folder ({a_file} is a file)"
    assert a_file.read_text() == "not a folder\n"


def test_run_into_a_suite_path_that_is_a_file(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "mine").write_text("x")
    line = one_error_line(bench_cli("run", *GRID, "--suite", "mine", results_dir=results))
    assert line == f"error: results folder {results}/mine: is a file, not a folder"


def test_status_report_and_collect_on_a_file(tmp_path, a_file, suite):
    assert one_error_line(bench_cli("status", str(a_file), results_dir=tmp_path)) == (
        f"error: bench status: {a_file}: is a file, not a folder")
    assert one_error_line(bench_cli("report", str(a_file), results_dir=tmp_path)) == (
        f"error: results folder {a_file}: is a file, not a folder")
    assert one_error_line(bench_cli("collect", str(suite), "--out", str(a_file), results_dir=tmp_path)) == (
        f"error: output folder {a_file}: is a file, not a folder")
    assert one_error_line(bench_cli("status", str(tmp_path / "nowhere"), results_dir=tmp_path)) == (
        f"error: bench status: {tmp_path / 'nowhere'}: does not exist")


def test_tune_into_a_results_root_that_is_a_file(tmp_path, a_file):
    line = one_error_line(bench_cli("tune", "--algo", "sac", "--env", "Pendulum", "--results-dir", str(a_file),
                                    results_dir=tmp_path))
    assert line.startswith(f"error: study folder {a_file}/sac-") and line.endswith(f"({a_file} is a file)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: permission denied cannot happen")
def test_permission_denied_is_one_line(tmp_path, suite):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    line = one_error_line(bench_cli("run", *GRID, "--results-dir", str(locked), results_dir=tmp_path))
    assert line == f"error: results folder {locked}/default: permission denied, not writable (cannot create it in {locked})"
    suite.chmod(0o000)
    try:
        line = one_error_line(bench_cli("report", str(suite), results_dir=tmp_path))
    finally:
        suite.chmod(0o755)
    assert line == f"error: results folder {suite}: permission denied, cannot be read"
