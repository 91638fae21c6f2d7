import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent


def bench_env(results_dir: Path, **extra: str) -> dict:
    """Environment for a `bench` subprocess: the checkout under test first on the path (so a git worktree tests
    its own code even where the editable install points at another checkout), then the test plugins."""
    python_path = os.pathsep.join([str(TESTS_DIR.parent), str(TESTS_DIR / "plugins")])
    return {**os.environ, "PYTHONPATH": python_path, "BENCH_RESULTS_DIR": str(results_dir), **extra}


def bench_cli(*args: str, results_dir: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `bench` entry point in a subprocess, the way a user does."""
    full_env = bench_env(results_dir, **(env or {}))
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def random_batch(obs_dim: int, act_dim: int, size: int, seed: int = 0):
    """A reproducible random minibatch of transitions (actions in [-1, 1], no terminal states)."""
    import torch

    from algorithms import Batch

    g = torch.Generator().manual_seed(seed)
    return Batch(obs=torch.randn(size, obs_dim, generator=g), actions=torch.rand(size, act_dim, generator=g) * 2 - 1,
                 rewards=torch.randn(size, generator=g), next_obs=torch.randn(size, obs_dim, generator=g),
                 terminated=torch.zeros(size))


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
