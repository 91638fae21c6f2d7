"""Where and how a command's runs execute: executor, cluster profile, device, threads per run and parallel
workers, resolved once from the flags (and a sweep spec's ``executor:``/``profile:``) for `bench run` and
`bench tune` alike."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

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


def local_device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {choice!r}: CUDA is not available here; valid choices: cpu, auto")
    if not (choice == "cpu" or choice.startswith("cuda")):
        raise ConfigError(f"--device {choice!r}: valid choices are cpu, cuda, cuda:N, auto")
    return choice
