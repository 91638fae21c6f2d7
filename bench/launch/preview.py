"""The plan of a sweep before it starts: per algorithm and env, its preset and protocol, env steps and gradient updates
per run, what its config changes from the algorithm's defaults, and an estimate of CPU time and replay memory from
costs measured on this project's reference machine (``bench/data/update_costs.yaml``). `bench run` prints it before
launching (and ``--dry-run`` stops after it), so a paper-scale diffusion sweep on a laptop is seen for what it is
before it starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import yaml

from algorithms import config as cfg
from bench import DATA_DIR
from bench.jobs import JobSpec, RunDir
from bench.plan.envs import space_info
from bench.plan.presets import departures
from bench.plan.protocols import Protocol

COSTS_FILE = DATA_DIR / "update_costs.yaml"
# Above this many CPU-hours per run on a CPU device, `bench run` warns: hours of one core, not of the machine.
HEAVY_RUN_CPU_HOURS = 4.0
FLOAT_BYTES = 4


@dataclass
class PlannedGroup:
    """The runs of one algorithm on one env (they differ only in their seed)."""

    algo: str
    env_id: str
    seeds: int
    preset: str | None
    protocol_name: str
    device: str
    env_steps: int
    updates: int
    changed: dict[str, tuple[Any, Any]]      # field -> (the algorithm's default, this config's value)
    cpu_hours: float | None                  # per run; None: no measured cost for this algorithm
    replay_gb: float
    measured_config: bool                    # the cost row was measured at exactly this config

    @property
    def total_cpu_hours(self) -> float | None:
        return None if self.cpu_hours is None else self.cpu_hours * self.seeds


@dataclass
class Preview:
    groups: list[PlannedGroup]
    warnings: list[str] = field(default_factory=list)

    @property
    def total_cpu_hours(self) -> float:
        return sum(group.total_cpu_hours or 0.0 for group in self.groups)


def preview(jobs: Sequence[JobSpec]) -> Preview:
    groups: dict[tuple[str, str], list[JobSpec]] = {}
    for job in jobs:
        groups.setdefault((job.algo, job.env_id), []).append(job)
    planned = [_group(members) for members in groups.values()]
    return Preview(planned, _warnings(planned) + _warmup_warnings([members[0] for members in groups.values()]))


def _group(jobs: list[JobSpec]) -> PlannedGroup:
    job = jobs[0]
    protocol = cfg.build(Protocol, job.protocol, where=f"{job.name} protocol")
    changed = departures(job.algo, job.env_id, job.agent_config)
    obs_dim, act_dim, episode_steps = env_dims(job.env_id)
    hours = cpu_hours(job.algo, job.env_id, protocol, obs_dim, episode_steps)
    replay = min(protocol.replay_size, protocol.total_steps) * (2 * obs_dim + act_dim + 2) * FLOAT_BYTES / 2**30
    return PlannedGroup(job.algo, job.env_id, len(jobs), job.preset, job.protocol_name, job.device,
                        protocol.total_steps, protocol.planned_updates, changed, hours, replay,
                        measured_config=not changed)


def cpu_hours(algo: str, env_id: str, protocol: Protocol, obs_dim: int, episode_steps: int) -> float | None:
    """One run's CPU time at one thread: updates, acting during training (after warm-up), env steps and evaluations,
    from the measured costs of the algorithm's defaults on this project's reference machine."""
    costs = _costs()
    rows = costs["algorithms"].get(algo)
    if rows is None:
        return None
    row = rows.get("large" if obs_dim > costs["large_obs_dim"] else "small", rows["small"])
    vector_steps = protocol.total_steps // protocol.n_envs
    acting_steps = max(0, vector_steps - protocol.warmup_steps // protocol.n_envs)
    act_ms = row["act5_ms"] if protocol.n_envs > 1 else row["act1_ms"]
    step_ms = _env_step_ms(env_id, obs_dim, costs)
    evaluation_ms = len(protocol.eval_steps) * episode_steps * (
        row["act20_ms"] if protocol.eval_episodes > 1 else row["act1_ms"]) + \
        len(protocol.eval_steps) * episode_steps * protocol.eval_episodes * step_ms
    milliseconds = (protocol.planned_updates * row["update_ms"] + acting_steps * act_ms
                    + vector_steps * (protocol.n_envs * step_ms + costs["harness_ms_per_vector_step"])
                    + evaluation_ms)
    return milliseconds / 3.6e6


def _env_step_ms(env_id: str, obs_dim: int, costs: dict) -> float:
    table = costs["env_step_ms"]
    family = env_id.split("/")[-1].rsplit("-v", 1)[0]
    if family in table:
        return table[family]
    return table["default_large" if obs_dim > costs["large_obs_dim"] else "default_small"]


@lru_cache(maxsize=None)
def _costs() -> dict:
    return yaml.safe_load(COSTS_FILE.read_text())


@lru_cache(maxsize=None)
def env_dims(env_id: str) -> tuple[int, int, int]:
    return space_info(env_id)


def _warmup_warnings(jobs: Sequence[JobSpec]) -> list[str]:
    """A warm-up that fills the whole budget leaves no step for learning: every evaluation scores the untrained
    policy. Allowed (a random-policy baseline is one), but never silently."""
    return [f"{job.algo} on {job.env_id}: warm-up {job.protocol['warmup_steps']:,} env steps is at or above the "
            f"budget of {job.protocol['total_steps']:,}: no gradient update will be made (lower --warmup or raise "
            f"--steps)" for job in jobs if job.protocol.get("warmup_steps", 0) >= job.protocol["total_steps"]]


def _warnings(groups: Sequence[PlannedGroup]) -> list[str]:
    heavy = [group for group in groups if group.device == "cpu" and (group.cpu_hours or 0) > HEAVY_RUN_CPU_HOURS]
    exact = [group for group in heavy if group.measured_config]
    changed = [group for group in heavy if not group.measured_config]
    lines = []
    if exact:
        lines.append(f"paper-scale runs on a CPU: {_heavy_names(exact)}. Alternatives: --executor slurm with a GPU "
                     f"profile (docs/sweeps-and-slurm.md), --device cuda on a GPU machine, or a cheaper config "
                     f"(--config algorithms/configs/cpu-smoke.yaml, --protocol quick --steps N).")
    if changed:
        # The cost rows are measured at each algorithm's defaults only: a config that changes particles, steps or
        # widths may cost far less (cpu-smoke) or more, so the estimate is a scale, not a verdict.
        fields = sorted({name for group in changed for name in group.changed})
        lines.append(f"possibly long runs on a CPU: {_heavy_names(changed)}, estimated at each algorithm's default "
                     f"settings, which this config changes ({', '.join(fields)}): the real cost may differ a lot; "
                     f"a short run (--steps N) measures it (time/cpu_s in {RunDir.SUMMARY}).")
    return lines


def _heavy_names(groups: Sequence[PlannedGroup]) -> str:
    return ", ".join(f"{group.algo} on {group.env_id} (~{group.cpu_hours:,.0f} CPU-h per run)" for group in groups)
