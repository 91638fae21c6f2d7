"""Where and how a command's runs execute: executor, cluster profile, device, threads per run and parallel
workers, resolved once from the flags (and a sweep spec's ``executor:``/``profile:``) for `bench run` and
`bench tune` alike."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from algorithms.config import ConfigError
from bench.launch.profiles import ClusterProfile, load_profile

from bench.plan.spec import EXECUTORS


@dataclass(frozen=True)
class Placement:
    executor: str                    # local | slurm | debug
    profile: ClusterProfile | None   # with slurm
    device: str                      # cpu, cuda, cuda:N
    threads: int                     # torch threads per run
    workers: int                     # parallel runs (local) or tuning workers


def resolve_placement(executor: str, profile: Path | str | None, device: str = "auto", threads: int | None = None,
                      workers: int = 1) -> Placement:
    """On SLURM the device follows the profile's GPUs (not this login node's) and threads its ``cpus_per_task``;
    here ``auto`` means CUDA where it is available, and the cores are shared between the workers."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; valid choices: {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    if executor == "slurm":
        if not profile:
            raise ConfigError("--executor slurm needs a cluster profile: --profile FILE or 'profile:' in the sweep "
                              "spec (examples: sweeps/profiles/local-cluster.yaml, example-cluster.yaml)")
        cluster = load_profile(profile)
        return Placement(executor, cluster, cluster.device if device == "auto" else device,
                         threads or cluster.cpus_per_task, workers)
    return Placement(executor, None, local_device(device), threads or max(1, (os.cpu_count() or 1) // workers),
                     workers)


def resolve_log(requested: Sequence[str] | None, placement: Placement) -> tuple[str, ...]:
    """The runs' metric sinks: the command's ``--log`` or the spec's ``log:`` (``requested``; ``none`` turns a
    profile's off), else the cluster profile's ``log:``, else none."""
    if requested is not None:
        return tuple(requested)
    return tuple(placement.profile.log) if placement.profile is not None else ()


def oversubscription_warning(placement: Placement, runs: int | None = None) -> str | None:
    """A line when more local workers run at once than there are cores (``runs``: how many runs there are, which
    caps the workers actually started); None otherwise."""
    cores = os.cpu_count() or 1
    workers = min(placement.workers, runs) if runs is not None else placement.workers
    if placement.executor != "local" or workers <= cores:
        return None
    return (f"--workers {placement.workers}: {workers} runs at once on {cores} cores; each gets {placement.threads} "
            f"torch thread(s) and they share the cores (no faster in total, each run slower)")


def local_device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {choice!r}: CUDA is not available here; valid choices: cpu, auto")
    if not (choice == "cpu" or choice.startswith("cuda")):
        raise ConfigError(f"--device {choice!r}: valid choices are cpu, cuda, cuda:N, auto")
    return choice


# GNU OpenMP's default lets a thread that waits at a barrier spin for a while: with 2 torch threads and another busy
# process on the cores, the spinning thread takes the core from the one it waits for (runs 1.5-2.3x slower than with
# 1 thread, issue 20). PASSIVE makes waiting threads sleep at once (docs/performance.md, "Threads").
OPENMP_WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")


def sleep_waiting_threads(environ: dict[str, str] | None = None) -> None:
    """Set OMP_WAIT_POLICY=PASSIVE for the processes started from here on (run workers, SLURM tasks, tune trials),
    unless the user set it. It takes effect in a process that has not loaded OpenMP yet: the children."""
    environ = os.environ if environ is None else environ
    environ.setdefault(*OPENMP_WAIT_POLICY)
