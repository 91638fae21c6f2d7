"""What a study is: its settings (plain data that crosses process and cluster boundaries) and the runs of a trial."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from algorithms import config as cfg
from algorithms.config import ConfigError
from bench.jobs import JobSpec
from bench.plan import layers
from bench.plan.envs import resolve_env_id
from bench.plan.expand import Execution, sweep_protocol
from bench.plan.grid import parse_seeds
from bench.plan.presets import DEFAULT_PRESET, load_preset
from bench.plan.protocols import Protocol
from bench.plan.spec import SweepSpec


@dataclass(frozen=True)
class TuneSettings:
    """Everything a worker needs (plain data: it crosses process and cluster boundaries)."""

    algo: str
    envs: tuple[str, ...]          # resolved env ids
    seeds: tuple[int, ...]
    trials: int
    study: str
    storage: str                   # URL, or journal:<path>
    study_dir: str                 # <results>/<study>: the trials' suites and the default storage
    preset: str = DEFAULT_PRESET
    protocol: str | None = None    # None: the preset's
    protocol_overrides: dict[str, Any] = field(default_factory=dict)
    config_files: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    search: str | None = None
    pruner: str = "median"
    pruner_startup: int = 3        # trials finished before the median pruner prunes
    pruner_warmup: int | None = None  # reports before a trial can be pruned; None: up to the end of warm-up
    sampler_seed: int = 0
    startup_trials: int = 10       # random trials before TPE models the results
    device: str = "cpu"
    torch_threads: int = 1
    plugins: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()
    log: tuple[str, ...] = ()      # metric sinks of every trial's runs (bench.records.sinks)

    def identity(self) -> dict[str, Any]:
        """What makes two launches the same experiment (a study must not mix two)."""
        return {"algo": self.algo, "envs": list(self.envs), "seeds": list(self.seeds), "preset": self.preset,
                "protocol": self.protocol,
                "protocol_overrides": dict(self.protocol_overrides), "overrides": list(self.overrides),
                "config_files": list(self.config_files), "search": self.search}


def default_study_name(algo: str, envs: Sequence[str]) -> str:
    return "-".join([algo, *(env.replace("/", "-") for env in envs)])


def resolve_startup_trials(requested: int | None, trials: int) -> int:
    """Random trials before TPE: as asked (0 allowed: TPE from the first trial), else a third of the study,
    2 to 10."""
    if requested is None:
        return max(2, min(10, trials // 3))
    if requested < 0:
        raise ConfigError(f"--startup-trials must be >= 0, got {requested}")
    return requested


def expand_trial(settings: TuneSettings, suite: str, params: dict[str, Any]) -> list[JobSpec]:
    """The runs of one trial, planned exactly as `bench run` plans: the config files, then the sampled parameters
    (as a spec's ``overrides``), then protocol flags and ``-o``."""
    s = settings
    trial = SweepSpec(name=suite, algos=[s.algo], envs=list(s.envs), seeds=list(s.seeds), preset=s.preset,
                      protocol=s.protocol,
                      config=list(s.config_files), overrides={s.algo: params}, plugins=list(s.plugins))
    return trial.expand(s.study_dir, [layers.from_protocol_flags(s.protocol_overrides),
                                      layers.from_assignments(s.overrides)],
                        Execution(device=s.device, torch_threads=s.torch_threads, argv=tuple(s.argv), log=s.log))


def eval_counts(settings: TuneSettings) -> tuple[int, int]:
    """Evaluations per run, and how many of them come before any update (at or before the end of warm-up): those
    score the initial random network, so pruning on them would judge a configuration before it learned."""
    job = expand_trial(settings, "check", {})[0]
    protocol = cfg.build(Protocol, job.protocol, where="protocol")
    return len(protocol.eval_steps), sum(step <= protocol.warmup_steps for step in protocol.eval_steps)


def resolve_envs(envs: Sequence[str], preset: str, protocol: str | None,
                 protocol_overrides: dict[str, Any]) -> tuple[str, ...]:
    version = sweep_protocol(load_preset(preset), protocol, protocol_overrides)[1].env_version
    return tuple(resolve_env_id(env, version) for env in envs)


def from_request(*, algo: str, envs: Sequence[str], seeds: str, trials: int, study: str, storage: str,
                 study_dir: Path, preset: str, protocol: str | None, protocol_overrides: dict[str, Any],
                 config_files: Sequence[Path],
                 overrides: Sequence[str], search: Path | None, pruner: str, pruner_startup: int,
                 pruner_warmup: int | None, sampler_seed: int, startup_trials: int | None, device: str,
                 torch_threads: int, plugins: Sequence[str], argv: Sequence[str],
                 log: Sequence[str] = ()) -> TuneSettings:
    """The settings `bench tune` asks for, names resolved (algorithm, env ids, seeds) and counts checked."""
    from algorithms import get_algorithm

    for flag, value, least in (("trials", trials, 1), ("pruner-startup", pruner_startup, 0)):
        if value < least:
            raise ConfigError(f"--{flag} must be >= {least}, got {value}")
    return TuneSettings(
        algo=get_algorithm(algo).name, envs=resolve_envs(envs, preset, protocol, protocol_overrides),
        seeds=tuple(parse_seeds(seeds)), trials=trials, study=study, storage=storage, study_dir=str(study_dir),
        preset=preset, protocol=protocol, protocol_overrides=dict(protocol_overrides),
        config_files=tuple(str(Path(path).resolve()) for path in config_files), overrides=tuple(overrides),
        search=str(Path(search).resolve()) if search else None, pruner=pruner, pruner_startup=pruner_startup,
        pruner_warmup=pruner_warmup, sampler_seed=sampler_seed, startup_trials=resolve_startup_trials(startup_trials, trials),
        device=device, torch_threads=torch_threads, plugins=tuple(plugins), argv=tuple(argv), log=tuple(log))
