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


SLURM_SCRIPT = TESTS_DIR.parent / "scripts" / "slurm-local-cluster.sh"
SLURM_DIR = Path(os.environ.get("BENCH_SLURM_DIR", "/tmp/bench-slurm"))


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real single-node SLURM cluster (scripts/slurm-local-cluster.sh, which apt-installs the packages if they
    are missing) for the whole session; SLURM_CONF is set for the tests and the `bench` subprocesses. Skipped only
    where it cannot exist (no slurmctld and no root/apt-get to install it); a cluster that is installed but does
    not start fails the tests. A cluster that was already running is left running."""
    import shutil

    installed = shutil.which("slurmctld") is not None
    if not installed and (os.geteuid() != 0 or shutil.which("apt-get") is None):
        pytest.skip("slurmctld is not installed and cannot be (needs root and apt-get)")
    already_running = subprocess.run([str(SLURM_SCRIPT), "status"], capture_output=True).returncode == 0
    started = subprocess.run([str(SLURM_SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if started.returncode != 0 and not installed and shutil.which("slurmctld") is None:
        pytest.skip(f"could not install SLURM: {started.stderr.strip()[-500:]}")
    assert started.returncode == 0, f"slurm-local-cluster.sh start failed:\n{started.stdout}\n{started.stderr}"
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(SLURM_DIR / "slurm.conf")
    yield SLURM_DIR
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
    if not already_running:
        subprocess.run([str(SLURM_SCRIPT), "stop"], capture_output=True, timeout=120)
