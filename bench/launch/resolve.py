"""Where and how a command's runs execute: executor, cluster profile, device, threads per run and parallel
workers, resolved once from the flags (and a sweep spec's ``executor:``/``profile:``) for `bench run` and
`bench tune` alike."""

from __future__ import annotations

import dataclasses
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
    runs_per_task: int = 1           # runs packed into one SLURM (or debug) task
    devices: tuple[str, ...] = ()    # local: the runs are spread over these, round-robin; (): all on `device`


def resolve_placement(executor: str, profile: Path | str | None, device: str = "auto", threads: int | None = None,
                      workers: int = 1, runs_per_task: int | None = None, devices: str | None = None) -> Placement:
    """On SLURM the device follows the profile's GPUs (not this login node's) and threads its ``cpus_per_task``,
    split between the ``runs_per_task`` runs of a task; here ``auto`` means CUDA where it is available, and the
    cores are shared between the workers (or the packed runs of a debug task)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; valid choices: {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    if runs_per_task is not None and runs_per_task < 1:
        raise ConfigError(f"--runs-per-task must be >= 1, got {runs_per_task}")
    if devices is not None and executor != "local":
        raise ConfigError(f"--devices spreads the runs of the local executor, not of --executor {executor} (on "
                          "SLURM the runs of a task share the profile's gpus_per_node GPUs, round-robin)")
    if executor == "slurm":
        if not profile:
            raise ConfigError("--executor slurm needs a cluster profile: --profile FILE or 'profile:' in the sweep "
                              "spec (examples: sweeps/profiles/local-cluster.yaml, example-cluster.yaml)")
        cluster = packed_profile(load_profile(profile), runs_per_task)
        return Placement(executor, cluster, cluster.device if device == "auto" else device,
                         threads or cluster.threads_per_run, workers, cluster.runs_per_task)
    if executor == "local" and runs_per_task not in (None, 1):
        raise ConfigError("--runs-per-task packs runs into the array tasks of --executor slurm (or debug); the "
                          "local executor runs --workers runs at once, spread over --devices")
    packed = runs_per_task or 1
    if devices is not None:
        if device != "auto":
            raise ConfigError(f"--device {device!r} and --devices {devices!r}: give one of them")
        spread = local_devices(devices)
        return Placement(executor, None, spread[0], threads or _cores_each(workers), workers, 1, spread)
    return Placement(executor, None, local_device(device), threads or _cores_each(max(workers, packed)), workers,
                     packed)


def _cores_each(parallel_runs: int) -> int:
    return max(1, (os.cpu_count() or 1) // parallel_runs)


def packed_profile(cluster: ClusterProfile, runs_per_task: int | None) -> ClusterProfile:
    """The profile with ``--runs-per-task`` in place of its own ``runs_per_task``, checked against its CPUs."""
    if runs_per_task is None or runs_per_task == cluster.runs_per_task:
        return cluster
    try:
        return dataclasses.replace(cluster, runs_per_task=runs_per_task)
    except ValueError as error:
        raise ConfigError(f"--runs-per-task {runs_per_task}: {error}") from None


def local_devices(names: str) -> tuple[str, ...]:
    """``--devices cuda:0,cuda:1``: each one checked against the devices this machine has."""
    import torch

    valid = ["cpu", *(f"cuda:{index}" for index in range(torch.cuda.device_count()))]
    spread = tuple(name.strip() for name in names.split(","))
    for name in spread:
        if name not in valid and not (name == "cuda" and len(valid) > 1):
            raise ConfigError(f"--devices: {name!r} does not exist here; valid devices: {', '.join(valid)}")
    return spread


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
