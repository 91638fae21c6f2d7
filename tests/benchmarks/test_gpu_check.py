"""benchmarks/gpu_check.sh cannot rot: its CPU smoke mode runs every agent and a pack of SDAC runs through the same
code as the GPU check, and prints both tables with their columns."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
AGENTS = ("sac", "td3", "sdac", "dpmd", "dacer", "dacer2", "cpql", "qsm", "dipo", "qvpo")


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=600, env=env)


def table(lines: list[str], first_column: str) -> list[list[str]]:
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return [rows[0], *rows[2:]]  # without the |---| line


def number(cell: str) -> float:
    return float(cell.rstrip("x"))


def test_quick_cpu_run_prints_every_agent_and_the_packed_runs():
    result = gpu_check("--device", "cpu", "--quick", "--pack-seconds", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "NOT paper settings" in lines[0]
    header, *rows = table(lines, "agent")
    assert header == ["agent", "ms/update eager", "ms/update compiled", "ms/update compiled + CUDA graphs",
                      "compile s (compiled / graphs)", "ms/act 1 state", "ms/act 5 states", "peak alloc MB",
                      "peak reserved MB"]
    assert [row[0] for row in rows] == list(AGENTS)
    for row in rows:
        assert number(row[1]) > 0 and number(row[5]) > 0 and number(row[6]) > 0, row
        assert row[7:] == ["n/a", "n/a"], row  # no CUDA memory on a CPU
        assert row[2:5] == ["skipped", "skipped", "skipped / skipped"], row  # --quick compiles nothing
    assert "notice: compiled columns measured for: none (--compile-agents)" in lines
    header, *packs = table(lines, "SDAC runs on one device")
    assert header == ["SDAC runs on one device", "total env steps/s", "per run", "vs 1 run"]
    assert [row[0] for row in packs] == ["1", "2"]
    assert all(number(row[1]) > 0 and number(row[2]) > 0 for row in packs) and packs[0][3] == "1.00x"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_one_line():
    result = gpu_check("--quick")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --device cuda: CUDA is not available here; valid choices: cpu (with --quick, to check the script)"]
