"""Cluster profiles (``--profile cluster.yaml``): every site-specific SLURM setting lives in one YAML file, never in
code. See sweeps/profiles/example-cluster.yaml for a commented example."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from algorithms import config as cfg
from bench.records.sinks import parse_log


@dataclass
class ClusterProfile:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    timeout_min: int = 60            # time limit of one array task (one run, or one stretch of it between requeues)
    cpus_per_task: int = 1           # split between the task's runs: each gets cpus_per_task // runs_per_task threads
    runs_per_task: int = 1           # runs packed into one array task, each in its own process, sharing its GPUs/CPUs
    gpus_per_node: int = 0           # 0: the runs use the CPU; >= 1: they use cuda
    mem_gb: float | None = None      # None: the cluster's default per CPU
    array_parallelism: int = 64      # array tasks of one array running at once (sbatch --array=...%N)
    max_array_size: int = 1000       # larger sweeps are split into several arrays (clusters cap MaxArraySize)
    max_num_timeout: int = 20        # requeues after a time limit before a run is given up (preemptions are free)
    signal_delay_s: int = 120        # USR2 this long before the time limit: time to write the checkpoint
    setup: tuple[str, ...] = ()      # shell lines run before the job (module load ..., source venv/bin/activate)
    sbatch: dict[str, Any] = field(default_factory=dict)  # any other sbatch option: {constraint: a100, exclude: node7}
    python: str | None = None        # interpreter on the compute nodes (default: the one running `bench run`)
    job_name: str = "bench"
    log: tuple[str, ...] = ()        # metric sinks of the runs (as --log), unless the command or the spec names some
    max_start_failures: int = 3      # submissions of a run whose task never started before `bench run` stops resubmitting

    def __post_init__(self) -> None:
        for key in ("timeout_min", "cpus_per_task", "runs_per_task", "array_parallelism", "max_array_size",
                    "max_start_failures"):
            cfg.check(getattr(self, key) >= 1, f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("gpus_per_node", "max_num_timeout", "signal_delay_s"):
            cfg.check(getattr(self, key) >= 0, f"{key} must be >= 0, got {getattr(self, key)}")
        cfg.check(self.mem_gb is None or self.mem_gb > 0, f"mem_gb must be > 0, got {self.mem_gb}")
        cfg.check(isinstance(self.sbatch, dict), f"sbatch must map option names to values, got {self.sbatch!r}")
        cfg.check(self.runs_per_task <= self.cpus_per_task,
                  f"runs_per_task ({self.runs_per_task}) must be <= cpus_per_task ({self.cpus_per_task}): each run of "
                  "a task needs a CPU of its own")

    @property
    def threads_per_run(self) -> int:
        return self.cpus_per_task // self.runs_per_task

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_node else "cpu"

    def submitit_parameters(self) -> dict[str, Any]:
        """Parameters for ``submitit.AutoExecutor.update_parameters``."""
        params: dict[str, Any] = {
            "timeout_min": self.timeout_min, "cpus_per_task": self.cpus_per_task, "nodes": 1, "tasks_per_node": 1,
            "name": self.job_name, "slurm_array_parallelism": self.array_parallelism,
            "slurm_signal_delay_s": self.signal_delay_s,
        }
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        for key in ("partition", "account", "qos"):
            if getattr(self, key):
                params[f"slurm_{key}"] = getattr(self, key)
        if self.sbatch:
            params["slurm_additional_parameters"] = {str(key): value for key, value in self.sbatch.items()}
        return params


def load_profile(path: Path | str) -> ClusterProfile:
    path = Path(path)
    if not path.is_file():
        raise cfg.ConfigError(f"--profile {str(path)!r}: no such file (examples in sweeps/profiles/)")
    try:
        data = cfg.read_yaml(path)
    except yaml.YAMLError as error:
        raise cfg.ConfigError(f"cluster profile {path}: not valid YAML ({error})") from None
    sbatch = data.pop("sbatch", None) or {}
    if not isinstance(sbatch, dict):
        raise cfg.ConfigError(f"cluster profile {path}: 'sbatch' must map option names to values, got {sbatch!r}")
    if data.get("log") is not None:
        data["log"] = parse_log(data["log"], f"cluster profile {path}: 'log'")
    profile = cfg.build(ClusterProfile, data, where=f"cluster profile {path}")
    profile.sbatch = dict(sbatch)
    return profile
