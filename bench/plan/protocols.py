"""Training protocols (budget, evaluation schedule, warm-up, parallel envs, update-to-data ratio) as data.

A protocol is what must be equal between two runs for their curves to be comparable; it is recorded in
every run's config.yaml next to the algorithm's config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from algorithms import config as cfg
from bench import DATA_DIR
from bench.jobs import DEFAULT_PROTOCOL
from bench.plan.flags import did_you_mean

PROTOCOL_DIR = DATA_DIR / "protocols"


@dataclass
class Protocol:
    total_steps: int = 1_000_000
    eval_every: int = 50_000
    eval_episodes: int = 20
    warmup_steps: int = 30_000
    n_envs: int = 5
    utd: float = 0.2
    replay_size: int = 1_000_000
    log_every: int = 5_000
    env_version: str | None = None
    eval_at_start: bool = True

    def __post_init__(self) -> None:
        positive = ("total_steps", "eval_every", "eval_episodes", "n_envs", "replay_size", "log_every")
        for key in positive:
            cfg.check(getattr(self, key) >= 1, f"{key} must be >= 1, got {getattr(self, key)}")
        cfg.check(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        cfg.check(self.utd > 0, f"utd must be > 0, got {self.utd}")
        # Env steps advance n_envs at a time; schedules that are not multiples would be hit late.
        for key in ("total_steps", "eval_every", "log_every"):
            value = getattr(self, key)
            cfg.check(value % self.n_envs == 0, f"{key}={value} must be a multiple of n_envs={self.n_envs}")

    @property
    def planned_updates(self) -> int:
        """Gradient updates of a whole run: ``utd * n_envs`` per vector step once the warm-up is in the buffer,
        whole updates only (bench.train.trainer.Trainer.train_step accumulates the same credit)."""
        vector_steps = max(0, self.total_steps // self.n_envs - self.warmup_steps // self.n_envs)
        credit = vector_steps * self.utd * self.n_envs
        return int(credit + 1e-9)  # 0.2 * 5 summed in floats can land a hair under a whole number

    @property
    def eval_steps(self) -> list[int]:
        """Env steps at which an evaluation row is written: the whole schedule, including the final step."""
        steps = list(range(self.eval_every, self.total_steps + 1, self.eval_every))
        if not steps or steps[-1] != self.total_steps:
            steps.append(self.total_steps)
        return ([0] if self.eval_at_start else []) + steps


def available_protocols() -> list[str]:
    return sorted(path.stem for path in PROTOCOL_DIR.glob("*.yaml"))


def protocol_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = PROTOCOL_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        raise cfg.ConfigError(
            f"unknown protocol {name_or_path!r}{did_you_mean(name_or_path, available_protocols())}; valid choices: "
            f"{', '.join(available_protocols())} "
            "(or a path to a protocol YAML file)"
        )
    return candidate


def load_protocol(name_or_path: str = DEFAULT_PROTOCOL, overrides: Mapping[str, Any] | None = None) -> Protocol:
    """The named protocol with ``overrides`` (e.g. from ``--steps``) applied and validated."""
    path = protocol_path(name_or_path)
    base = cfg.build(Protocol, cfg.read_yaml(path), where=str(path))
    return cfg.replace(base, dict(overrides or {}), where="protocol overrides")
