"""A sweep spec and the layers above it -> the list of JobSpecs, every config resolved and validated.

Everything is resolved here, before any directory is created, so a typo fails the whole command up front and
writes nothing. `bench run`, `bench status`, `bench tune` (one trial) and the tests all plan through
:func:`expand`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import algorithms as algo_base  # lazy: torch loads when an algorithm is first looked up
from algorithms import config as cfg
from bench import plugins as plugin_loader
from bench.jobs import DEFAULT_PROTOCOL, JobSpec, RunDir, config_differences, default_results_root
from bench.plan import layers as layering
from bench.plan.envs import resolve_env_id
from bench.plan.grid import check_suite_name, unique
from bench.plan.presets import Preset, load_preset
from bench.plan.protocols import Protocol, load_protocol

if TYPE_CHECKING:
    from bench.plan.spec import SweepSpec


# A config field the harness fills in (algorithms/fields.py): the gradient updates the run's protocol will make, so
# that an agent can schedule something over its whole run (DACER's entropy regulator).
PLANNED_UPDATES = "planned_updates"


@dataclass(frozen=True)
class Execution:
    """How the runs execute; not part of a run's identity (a resume may use other threads or another device)."""

    device: str = "cpu"
    torch_threads: int = 1
    checkpoint_every: int | None = None   # env steps; None: every 5 % of the budget; 0: never
    argv: tuple[str, ...] = ()
    log: tuple[str, ...] = ()             # metric sinks beside the CSV logs (bench.records.sinks)
    compile: str | None = None  # a torch.compile mode (algorithms.compiled.MODES); None: eager


def expand(spec: "SweepSpec", later_layers: Sequence[layering.Layer] = (), execution: Execution = Execution(),
           results_root: Path | str | None = None) -> list[JobSpec]:
    """The runs of ``spec`` (algos x envs x seeds, in that order): the spec's own layers, then ``later_layers``
    (the command line's), each later layer winning key by key (see :mod:`bench.plan.layers`)."""
    check_suite_name(spec.name)
    plugins = plugin_loader.load_plugins(spec.plugins)
    algos = unique("algorithm", [algo_base.get_algorithm(name).name for name in spec.algos])
    preset = load_preset(spec.preset)
    layers = [*spec.layers(), *later_layers]
    protocol_name, protocol = sweep_protocol(preset, spec.protocol, layering.protocol_values(layers, algos))
    env_ids = unique("environment", [resolve_env_id(env, protocol.env_version) for env in spec.envs])
    layers = [*preset.layers(env_ids), *layers]
    env_of = _env_layer_ids(layers, env_ids, protocol.env_version)
    protocol_dict = cfg.to_dict(protocol)
    _check_checkpoint_every(execution.checkpoint_every, protocol.n_envs)
    root = Path(results_root) if results_root is not None else default_results_root()
    jobs = []
    for algo in algos:
        for env_id in env_ids:
            values = layering.algo_values(layers, algos, env_id, env_of)[algo]
            if PLANNED_UPDATES in algo_base.config_keys(algo):
                values.setdefault(PLANNED_UPDATES, protocol.planned_updates)
            agent_config = cfg.to_dict(algo_base.resolve_config(algo, env_id, values))
            for seed in spec.seeds:
                jobs.append(JobSpec(
                    algo=algo, env_id=env_id, seed=int(seed), suite=spec.name, protocol=protocol_dict,
                    agent_config=agent_config, run_dir=str(RunDir.at(root, spec.name, algo, env_id, seed).path),
                    protocol_name=protocol_name, preset=preset.name, device=execution.device,
                    torch_threads=execution.torch_threads, argv=tuple(execution.argv), plugins=tuple(plugins),
                    checkpoint_every=execution.checkpoint_every, log=tuple(execution.log),
                    compile=execution.compile,
                ))
    return jobs


def sweep_protocol(preset: Preset, protocol: str | None, overrides: Mapping[str, Any]) -> tuple[str, Protocol]:
    """The protocol a sweep names (``--protocol``, a spec's ``protocol:``), else its preset's; the preset's changes
    to its protocol apply when that is the protocol run; then ``overrides`` (the layers' protocol values). Returns
    its name and the resolved protocol."""
    name = protocol or preset.protocol or DEFAULT_PROTOCOL
    base = dict(preset.protocol_overrides) if name == preset.protocol else {}
    return name, load_protocol(name, {**base, **overrides})


def _env_layer_ids(layers: Sequence[layering.Layer], env_ids: Sequence[str], version: str | None) -> dict[str, str]:
    """The resolved id of every env a layer is restricted to; it must be an environment of the sweep."""
    env_of = {}
    for layer in layers:
        if layer.env is None:
            continue
        env_id = resolve_env_id(layer.env, version)
        if env_id not in env_ids:
            raise cfg.ConfigError(f"env_overrides: {layer.env!r} ({env_id}) is not an environment of this sweep; "
                                  f"valid: {', '.join(env_ids)}")
        env_of[layer.env] = env_id
    return env_of


def _check_checkpoint_every(checkpoint_every: int | None, n_envs: int) -> None:
    if checkpoint_every is not None and (checkpoint_every < 0 or checkpoint_every % n_envs):
        raise cfg.ConfigError(f"--checkpoint-every {checkpoint_every}: must be 0 (never) or a positive multiple "
                              f"of n_envs={n_envs}")


def find_conflicts(jobs: Sequence[JobSpec]) -> list[str]:
    """Runs whose directory holds a different configuration than requested, with the keys that differ.
    Resuming or skipping such a run would silently mix two experiments under one name."""
    conflicts = []
    for job in jobs:
        on_disk = job.directory.read_config()
        if on_disk is None:
            continue
        differences = config_differences(on_disk, job.resolved_config())
        if differences:
            conflicts.append(f"{job.name}: " + "; ".join(differences))
    return conflicts
