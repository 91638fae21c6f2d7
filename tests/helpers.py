"""What tests share besides fixtures (those are in conftest.py): the repository's paths, the real `bench` command in
a subprocess, and the tiny run every CLI test uses. Import it as ``from tests.helpers import ...``."""

import os
import subprocess
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
PLUGINS_DIR = TESTS_DIR / "plugins"


def bench_env(results_dir: Path, **extra: str) -> dict:
    """Environment for a `bench` subprocess: the checkout under test first on the path (so a git worktree tests
    its own code even where the editable install points at another checkout), then the test plugins."""
    python_path = os.pathsep.join([str(ROOT), str(PLUGINS_DIR)])
    return {**os.environ, "PYTHONPATH": python_path, "BENCH_RESULTS_DIR": str(results_dir), **extra}


def bench_cli(*args: str, results_dir: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `bench` entry point in a subprocess, the way a user does."""
    full_env = bench_env(results_dir, **(env or {}))
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


# A run small enough for a unit test: Pendulum, 300 env steps, evaluation every 100 steps over 2 episodes; no
# preset, so every algorithm runs at its own defaults.
TINY = ["--preset", "none", "--protocol", "quick", "--steps", "300", "--warmup", "100", "--eval-every", "100", "--eval-episodes", "2",
        "-o", "protocol.log_every=100", "-o", "batch_size=32", "-o", "hidden=32,32", "--threads", "1"]


SLURM_SCRIPT = ROOT / "scripts" / "slurm-local-cluster.sh"
SLURM_DIR = Path(os.environ.get("BENCH_SLURM_DIR", "/tmp/bench-slurm"))




def plan_jobs(algos, envs, seeds, *, suite: str, results_root, protocol: str | None = None,
              protocol_overrides: dict | None = None, overrides=(), config_files=(), checkpoint_every=None,
              plugins=(), preset: str = "none"):
    """A grid planned the way `bench run --algos ... --envs ... --config FILE --steps N -o KEY=V` plans it; with
    no preset unless one is named, so that a test sees the algorithms' own defaults."""
    from bench.jobs import DEFAULT_PROTOCOL
    from bench.plan import layers
    from bench.plan.expand import Execution
    from bench.plan.spec import SweepSpec

    spec = SweepSpec(name=suite, algos=list(algos), envs=list(envs), seeds=list(seeds),
                     protocol=protocol or DEFAULT_PROTOCOL, plugins=list(plugins), preset=preset)
    command_line = layers.from_command_line(config_files, protocol_overrides or {}, overrides)
    return spec.expand(results_root, command_line, Execution(checkpoint_every=checkpoint_every))
