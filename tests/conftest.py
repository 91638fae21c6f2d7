"""Fixtures shared by every test folder; plain helpers are in tests/helpers.py."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import SLURM_DIR, SLURM_SCRIPT


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
