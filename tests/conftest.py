import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent


def bench_cli(*args: str, results_dir: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `bench` entry point in a subprocess, the way a user does."""
    full_env = {**os.environ, "PYTHONPATH": str(TESTS_DIR / "plugins"), "BENCH_RESULTS_DIR": str(results_dir),
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


# A run small enough for a unit test: Pendulum, 300 env steps, evaluation every 100 steps over 2 episodes.
TINY = ["--protocol", "quick", "--steps", "300", "--warmup", "100", "--eval-every", "100", "--eval-episodes", "2",
        "-o", "protocol.log_every=100", "-o", "batch_size=32", "-o", "hidden=32,32", "--threads", "1"]


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensor ops on one thread: when another process keeps a core busy, multi-threaded small ops stall
    (measured: a 4 s test took 45 s with 2 threads on this 2-core machine under load)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
