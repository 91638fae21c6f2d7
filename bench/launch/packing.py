"""Several runs on one machine's devices: the local executor's ``--devices`` (runs spread round-robin) and the
SLURM profile's ``runs_per_task`` (runs packed into one array task, each in its own process, the task's CPUs
split between them and its GPUs shared round-robin)."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from bench.jobs import JobSpec
from bench.launch.resolve import Placement


def spread_over_devices(jobs: Sequence[JobSpec], devices: Sequence[str]) -> list[JobSpec]:
    """Job ``i`` on ``devices[i % len(devices)]``; the jobs unchanged when no list was given."""
    if not devices:
        return list(jobs)
    return [dataclasses.replace(job, device=devices[index % len(devices)]) for index, job in enumerate(jobs)]


def task_devices(jobs: Sequence[JobSpec], gpus: int) -> list[JobSpec]:
    """The runs of one packed task on the task's ``gpus`` GPUs: ``cuda`` becomes ``cuda:<slot % gpus>`` (SLURM
    numbers a task's own GPUs from 0); CPU runs and a single GPU are left as they are."""
    if gpus <= 1:
        return list(jobs)
    return [dataclasses.replace(job, device=f"cuda:{slot % gpus}") if job.device == "cuda" else job
            for slot, job in enumerate(jobs)]


def pack(jobs: Sequence[JobSpec], runs_per_task: int) -> list[list[JobSpec]]:
    """Consecutive groups of ``runs_per_task`` runs (the last one may be smaller): one group per array task."""
    return [list(jobs[start:start + runs_per_task]) for start in range(0, len(jobs), runs_per_task)]


def placement_record(placement: Placement) -> dict[str, Any]:
    """How the sweep was placed, for sweep.yaml: what a reader needs to compare the speed of two sweeps."""
    record: dict[str, Any] = {"executor": placement.executor, "device": placement.device,
                              "threads_per_run": placement.threads, "runs_per_task": placement.runs_per_task}
    if placement.executor == "local":
        record["workers"] = placement.workers
    if placement.devices:
        record["devices"] = list(placement.devices)
    if placement.profile is not None:
        record["cpus_per_task"] = placement.profile.cpus_per_task
        record["gpus_per_node"] = placement.profile.gpus_per_node
    return record
