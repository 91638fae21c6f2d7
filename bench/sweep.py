"""From what the user asked for (algorithms x environments x seeds, protocol, overrides) to a list of JobSpecs.

Everything is resolved and validated here, before any directory is created, so a typo fails the whole
command up front and writes nothing.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import algorithms as algo_base  # lazy: torch loads when an algorithm is first looked up
from algorithms import config as cfg
from bench import records
from bench.envs import resolve_env_id
from bench.protocols import DEFAULT_PROTOCOL, Protocol, load_protocol


@dataclass(frozen=True)
class JobSpec:
    """One run (algorithm x env x seed). Plain data: it crosses process and cluster boundaries."""

    algo: str
    env_id: str
    seed: int
    suite: str
    protocol: dict[str, Any]
    agent_config: dict[str, Any]
    run_dir: str
    protocol_name: str = DEFAULT_PROTOCOL
    device: str = "cpu"
    torch_threads: int = 1
    argv: tuple[str, ...] = field(default_factory=tuple)
    plugins: tuple[str, ...] = field(default_factory=tuple)
    checkpoint_every: int | None = None  # env steps; None: every 5 % of the budget; 0: never

    @property
    def name(self) -> str:
        return f"{self.algo}/{self.env_id}/seed={self.seed}"

    def resolved_config(self) -> dict[str, Any]:
        """What config.yaml holds: identity, protocol, the algorithm's full config, execution settings."""
        return {
            "suite": self.suite, "algo": self.algo, "env_id": self.env_id, "seed": self.seed,
            "protocol_name": self.protocol_name, "protocol": dict(self.protocol), "agent": dict(self.agent_config),
            "execution": {"device": self.device, "torch_threads": self.torch_threads,
                          "checkpoint_every": self.checkpoint_every},
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_seeds(text: str | int) -> list[int]:
    """``10`` -> 0..9; ``3,5,7`` -> those; ``0-4`` -> 0..4 inclusive; parts can be mixed (``0-2,7``)."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        count = int(text)
        if count < 1:
            raise cfg.ConfigError(f"--seeds {text!r}: need at least one seed")
        return list(range(count))
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)-(\d+)", part)
        if match and int(match[1]) <= int(match[2]):
            seeds.extend(range(int(match[1]), int(match[2]) + 1))
        elif re.fullmatch(r"\d+", part):
            seeds.append(int(part))
        else:
            raise cfg.ConfigError(
                f"--seeds {text!r}: cannot read {part!r}; use a count (10 -> seeds 0..9), a list (3,5,7) "
                "or an inclusive range (0-4)"
            )
    if len(set(seeds)) != len(seeds):
        raise cfg.ConfigError(f"--seeds {text!r} lists a seed twice")
    return seeds


def split_names(text: str | Sequence[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else [part for item in text for part in item.split(",")]
    names = [item.strip() for item in items if item.strip()]
    if not names:
        raise cfg.ConfigError("empty list of names")
    return names


@dataclass
class RoutedOverrides:
    """``-o`` overrides sorted by target: ``protocol.key``, ``<algo>.key`` or a bare key for every algorithm."""

    protocol: dict[str, str] = field(default_factory=dict)
    per_algo: dict[str, dict[str, str]] = field(default_factory=dict)


def route_overrides(overrides: Sequence[str], algos: Sequence[str]) -> RoutedOverrides:
    routed = RoutedOverrides(per_algo={algo: {} for algo in algos})
    for text in overrides:
        key, value = cfg.parse_override(text)
        prefix, dot, rest = key.partition(".")
        if dot and prefix == "protocol":
            routed.protocol[rest] = value
        elif dot and prefix in routed.per_algo:
            _check_key(prefix, rest)
            routed.per_algo[prefix][rest] = value
        elif dot:
            raise cfg.ConfigError(
                f"override {key!r}: prefix {prefix!r} is neither 'protocol' nor one of the selected "
                f"algorithms ({', '.join(algos)})"
            )
        else:
            for algo in algos:
                _check_key(algo, key)
                routed.per_algo[algo][key] = value
    return routed


def load_override_file(path: Path | str, algos: Sequence[str]) -> RoutedOverrides:
    """A YAML file of overrides: top-level keys are algorithm names or ``protocol``, each a mapping of
    field -> value (e.g. algorithms/configs/cpu-smoke.yaml). Sections for algorithms not selected are
    ignored, so one file can serve several sweeps."""
    path = Path(path)
    if not path.exists():
        raise cfg.ConfigError(f"--config {str(path)!r}: no such file")
    return route_sections(cfg.read_yaml(path), algos, str(path))


def route_sections(data: Mapping[str, Any], algos: Sequence[str], where: str) -> RoutedOverrides:
    """Overrides in the shape of a ``--config`` file (``{algo or 'protocol': {key: value}}``), checked and routed."""
    routed = RoutedOverrides(per_algo={algo: {} for algo in algos})
    valid = set(algo_base.available_algorithms()) | {"protocol"}
    for section, values in data.items():
        if section not in valid:
            raise cfg.ConfigError(f"{where}: unknown section {section!r}; valid sections: "
                                  f"{', '.join(sorted(valid))}")
        if not isinstance(values, dict):
            raise cfg.ConfigError(f"{where}: section {section!r} must map keys to values")
        if section == "protocol":
            routed.protocol.update(values)
        elif section in routed.per_algo:
            for key in values:
                _check_key(section, key)
            routed.per_algo[section].update(values)
    return routed


def _check_key(algo: str, key: str) -> None:
    keys = algo_base.config_keys(algo)
    if key not in keys:
        raise cfg.ConfigError(
            f"unknown key {key!r} for algorithm {algo!r}; valid keys: {', '.join(sorted(keys))} "
            "(protocol keys take the prefix 'protocol.', e.g. -o protocol.eval_episodes=10)"
        )


def expand(algos: Sequence[str], envs: Sequence[str], seeds: Sequence[int], *, suite: str,
           protocol: str = DEFAULT_PROTOCOL, protocol_overrides: Mapping[str, Any] | None = None,
           overrides: Sequence[str] = (), results_root: Path | str | None = None, device: str = "cpu",
           torch_threads: int = 1, argv: Sequence[str] = (), plugins: Sequence[str] = (),
           checkpoint_every: int | None = None, config_files: Sequence[Path | str] = (),
           inline_overrides: Mapping[str, Mapping[str, Any]] | None = None,
           env_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
           late_config_files: Sequence[Path | str] = ()) -> list[JobSpec]:
    """Cartesian product algos x envs x seeds, every config resolved and validated.

    Precedence, lowest first: dataclass defaults, the algorithm YAML's ``default`` and env blocks,
    ``config_files`` in order, ``inline_overrides`` (a sweep spec's ``overrides``, same shape as a file), the
    spec's ``env_overrides`` for that env, ``late_config_files`` (``--config`` given next to a spec), then
    ``overrides`` (``-o``). Protocol fields: the same files and sections, then ``protocol_overrides`` (flags such
    as ``--steps``), then ``-o protocol.<key>``: what is typed on the command line wins over what is in a file."""
    _check_suite_name(suite)
    plugins = load_plugins(plugins)
    algo_names = _unique("algorithm", [algo_base.get_algorithm(name).name for name in algos])
    cli_layer = route_overrides(overrides, algo_names)
    routed = _merged([*(load_override_file(path, algo_names) for path in config_files),
                      route_sections(inline_overrides or {}, algo_names, "sweep spec overrides")], algo_names)
    late = _merged([load_override_file(path, algo_names) for path in late_config_files], algo_names)
    resolved_protocol: Protocol = load_protocol(protocol, {**routed.protocol, **late.protocol,
                                                           **(protocol_overrides or {}), **cli_layer.protocol})
    env_ids = _unique("environment", [resolve_env_id(env, resolved_protocol.env_version) for env in envs])
    per_env = _route_env_overrides(env_overrides or {}, env_ids, algo_names, resolved_protocol.env_version)
    root = Path(results_root) if results_root is not None else records.default_results_root()
    protocol_dict = cfg.to_dict(resolved_protocol)
    if checkpoint_every is not None and (checkpoint_every < 0 or checkpoint_every % resolved_protocol.n_envs):
        raise cfg.ConfigError(f"--checkpoint-every {checkpoint_every}: must be 0 (never) or a positive multiple "
                              f"of n_envs={resolved_protocol.n_envs}")
    jobs = []
    for algo in algo_names:
        for env_id in env_ids:
            values = {**routed.per_algo[algo], **per_env.get(env_id, {}).get(algo, {}), **late.per_algo[algo],
                      **cli_layer.per_algo[algo]}
            agent_config = cfg.to_dict(algo_base.resolve_config(algo, env_id, values))
            for seed in seeds:
                jobs.append(JobSpec(
                    algo=algo, env_id=env_id, seed=int(seed), suite=suite, protocol=protocol_dict,
                    agent_config=agent_config, run_dir=str(records.run_dir(root, suite, algo, env_id, seed)),
                    protocol_name=protocol, device=device, torch_threads=torch_threads, argv=tuple(argv),
                    plugins=tuple(plugins), checkpoint_every=checkpoint_every,
                ))
    return jobs


def _merged(layers: Sequence[RoutedOverrides], algos: Sequence[str]) -> RoutedOverrides:
    """One layer from several, later ones winning key by key."""
    merged = RoutedOverrides(per_algo={algo: {} for algo in algos})
    for layer in layers:
        merged.protocol.update(layer.protocol)
        for algo, values in layer.per_algo.items():
            merged.per_algo[algo].update(values)
    return merged


def _route_env_overrides(env_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]], env_ids: Sequence[str],
                         algos: Sequence[str], version: str | None) -> dict[str, dict[str, dict[str, Any]]]:
    """``{env: {algo: {key: value}}}`` keyed by resolved env id; an env not in the sweep or a protocol section is an
    error (the protocol is what makes a suite's curves comparable, so it is the same for every env)."""
    per_env: dict[str, dict[str, dict[str, Any]]] = {}
    for env, sections in env_overrides.items():
        env_id = resolve_env_id(env, version)
        if env_id not in env_ids:
            raise cfg.ConfigError(f"env_overrides: {env!r} ({env_id}) is not an environment of this sweep; "
                                  f"valid: {', '.join(env_ids)}")
        if "protocol" in sections:
            raise cfg.ConfigError(f"env_overrides.{env}: a protocol cannot differ per environment; "
                                  "set it in 'overrides' or make a separate suite")
        per_env[env_id] = route_sections(sections, algos, f"env_overrides.{env}").per_algo
    return per_env


def _check_suite_name(suite: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", suite):
        raise cfg.ConfigError(f"suite name {suite!r}: use letters, digits, '.', '_' and '-' (it names a folder)")


def _unique(kind: str, names: list[str]) -> list[str]:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise cfg.ConfigError(f"{kind} {', '.join(repeated)} is listed twice")
    return names


def load_plugins(entries: Sequence[str]) -> list[str]:
    """Import user modules that register extra algorithms (``bench run --plugin my_ddpg``); returns their module
    names, which is what a JobSpec carries to worker processes and SLURM tasks.

    An entry is a module name (``my_ddpg``, ``my_pkg.agents``) or the path of a ``.py`` file (``./my_ddpg.py``).
    A module name is looked up on ``sys.path`` and then in the current directory: ``python -m bench.cli`` puts the
    current directory on the path, the ``bench`` console script does not. A file's folder goes first on
    ``sys.path``. The local pool's spawned workers start with this process's ``sys.path`` and working directory, so
    they import the same files."""
    return [_import_plugin(str(entry)) for entry in entries]


def is_plugin_file(entry: str) -> bool:
    """A plugin entry naming a file (``./my_ddpg.py``) rather than a module (``my_ddpg``)."""
    return entry.endswith(".py") or "/" in entry or os.sep in entry


def _import_plugin(entry: str) -> str:
    if is_plugin_file(entry):
        path = Path(entry).expanduser().resolve()
        if not path.is_file():
            raise cfg.ConfigError(f"plugin file {path} does not exist")
        name = path.stem
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        module = _import(name, entry)
        origin = Path(getattr(module, "__file__", "") or "").resolve()
        if origin != path:
            raise cfg.ConfigError(f"plugin {entry!r}: the name {name!r} is already taken by {origin}; rename the file")
        return name
    try:
        _import(entry, entry)
    except _PluginNotFound:
        cwd = os.getcwd()
        if cwd in sys.path or "" in sys.path:
            raise _not_found(entry, cwd) from None
        sys.path.append(cwd)  # after everything else, so a file here never shadows an installed module
        try:
            _import(entry, entry)
        except _PluginNotFound:
            sys.path.remove(cwd)
            raise _not_found(entry, cwd) from None
    return entry


class _PluginNotFound(cfg.ConfigError):
    pass


def _import(name: str, entry: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            raise _PluginNotFound(name) from None
        raise cfg.ConfigError(f"plugin {entry!r} could not be imported: {error}") from None
    except ImportError as error:
        raise cfg.ConfigError(f"plugin {entry!r} could not be imported: {error}") from None


def _not_found(entry: str, cwd: str) -> cfg.ConfigError:
    return cfg.ConfigError(
        f"plugin module {entry!r} not found on the Python path or in the current directory ({cwd}); run bench from "
        f"the folder that holds {entry.split('.')[0]}.py, give the file's path (--plugin path/to/"
        f"{entry.split('.')[0]}.py) or add its folder to PYTHONPATH")


def find_conflicts(jobs: Sequence[JobSpec]) -> list[str]:
    """Runs whose directory holds a different configuration than requested, with the keys that differ.
    Resuming or skipping such a run would silently mix two experiments under one name."""
    conflicts = []
    for job in jobs:
        on_disk = records.read_config(Path(job.run_dir))
        if on_disk is None:
            continue
        differences = records.config_differences(on_disk, job.resolved_config())
        if differences:
            conflicts.append(f"{job.name}: " + "; ".join(differences))
    return conflicts
