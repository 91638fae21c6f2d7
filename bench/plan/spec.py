"""Sweep specs (``sweeps/*.yaml``): a named suite of algorithms x environments x seeds, its protocol and overrides,
and where it runs. ``bench run sweeps/x.yaml`` and the flag form ``bench run --algos ... --envs ...`` both build a
:class:`SweepSpec`, so they make the same job list.

    name: smoke                      # the suite: results/<name>/
    algos: [sac, sdac]
    envs: [Pendulum, InvertedPendulum]
    seeds: 2                         # count (0..1), list [3, 5] or range "0-4"
    preset: sdac-paper               # name or YAML path (default: sdac-paper; `none`: no preset)
    protocol: quick                  # name or YAML path (default: the preset's protocol)
    config: [../algorithms/configs/cpu-smoke.yaml]   # override files (as --config), relative to this file
    overrides:                       # inline, same shape as a --config file, applied after it
      protocol: {total_steps: 5000}
      sdac: {hidden: [64, 64]}
    env_overrides:                   # per environment, then per algorithm, applied after `overrides`
      InvertedPendulum: {sac: {tau: 0.01}}
    executor: local                  # local | slurm | debug
    profile: profiles/local-cluster.yaml   # cluster profile for slurm (relative to this file)
    log: [tensorboard, wandb]        # metric sinks beside the CSV logs (as --log; default: the profile's, else none)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from algorithms.config import ConfigError, read_yaml
from bench.jobs import JobSpec, SuiteDir, write_yaml
from bench.plan import layers
from bench.plan.expand import Execution, expand
from bench.plan.grid import parse_seeds, split_names
from bench.plan.layers import Layer
from bench.plan.presets import DEFAULT_PRESET
from bench.plugins import is_plugin_file
from bench.records.sinks import parse_log

EXECUTORS = ("local", "slurm", "debug")


@dataclass
class SweepSpec:
    name: str
    algos: list[str]
    envs: list[str]
    seeds: list[int]
    preset: str = DEFAULT_PRESET
    protocol: str | None = None  # None: the preset's
    config: list[str] = field(default_factory=list)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    env_overrides: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    executor: str = "local"
    profile: str | None = None
    plugins: list[str] = field(default_factory=list)
    description: str = ""
    log: list[str] | None = None  # None: not set here (a cluster profile's `log:` applies, else no sink)

    def layers(self) -> list[Layer]:
        """The spec's own override layers, lowest first: ``config`` files, ``overrides``, ``env_overrides``."""
        return [*(layers.from_file(path) for path in self.config),
                layers.from_sections(self.overrides, "sweep spec overrides"),
                *(layers.from_sections(sections, f"env_overrides.{env}", env=env)
                  for env, sections in self.env_overrides.items())]

    def expand(self, results_root: Path | str | None = None, later_layers: Sequence[Layer] = (),
               execution: Execution = Execution()) -> list[JobSpec]:
        """The job list; ``later_layers`` (the command line's) come after the spec's own."""
        return expand(self, later_layers, execution, results_root)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SPEC_KEYS = tuple(f.name for f in dataclasses.fields(SweepSpec))
REQUIRED_KEYS = ("name", "algos", "envs")


def load_spec(path: Path | str) -> SweepSpec:
    """Read and check a sweep spec: unknown keys, wrong shapes and bad executors fail here with the valid choices.
    Algorithm names, environments, config keys and values are checked when the spec is expanded."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep spec {str(path)!r}: no such file")
    try:
        data = read_yaml(path)
    except yaml.YAMLError as error:
        raise ConfigError(f"sweep spec {path}: not valid YAML ({error})") from None
    where = f"sweep spec {path}"
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(SPEC_KEYS)}")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    base = path.resolve().parent
    return SweepSpec(
        name=_text(data["name"], "name", where),
        algos=split_names(_names(data["algos"], "algos", where)),
        envs=split_names(_names(data["envs"], "envs", where)),
        seeds=_seeds(data.get("seeds", 1), where),
        preset=_relative_if_file(_text(data.get("preset", DEFAULT_PRESET), "preset", where), base),
        protocol=(_relative_if_file(_text(data["protocol"], "protocol", where), base)
                  if data.get("protocol") is not None else None),
        config=[str(_resolve(base, item)) for item in _list(data.get("config", []), "config", where)],
        overrides=_sections(data.get("overrides", {}), "overrides", where),
        env_overrides={str(env): _sections(sections, f"env_overrides.{env}", where)
                       for env, sections in _mapping(data.get("env_overrides", {}), "env_overrides", where).items()},
        executor=check_executor(_text(data.get("executor", "local"), "executor", where), where),
        profile=str(_resolve(base, data["profile"])) if data.get("profile") else None,
        # A plugin file is relative to the spec, like `config` and `profile`; a module name stays a name.
        plugins=[str(_resolve(base, item)) if is_plugin_file(str(item)) else str(item)
                 for item in _list(data.get("plugins", []), "plugins", where)],
        description=str(data.get("description", "")),
        log=list(parse_log(data["log"], f"{where}: 'log'")) if data.get("log", None) is not None else None,
    )


def from_flags(*, suite: str, algos: str, envs: str, seeds: str, protocol: str | None, executor: str,
               profile: Path | None, plugins: Sequence[str], preset: str = DEFAULT_PRESET) -> SweepSpec:
    """The spec the flag form describes (file paths relative to the working directory). Its ``--config`` files are
    command-line layers, as next to a spec file."""
    return SweepSpec(
        name=suite, algos=split_names(algos), envs=split_names(envs), seeds=parse_seeds(seeds),
        preset=preset, protocol=protocol, executor=check_executor(executor, "--executor"),
        profile=str(Path(profile).resolve()) if profile else None, plugins=list(plugins),
    )


def check_executor(name: str, where: str) -> str:
    if name not in EXECUTORS:
        raise ConfigError(f"{where}: unknown executor {name!r}; valid choices: {', '.join(EXECUTORS)}")
    return name


def save_resolved(spec: SweepSpec, jobs: Sequence[JobSpec], suite: SuiteDir,
                  cli_config_files: Sequence[Path | str] = (), placement: dict[str, Any] | None = None) -> Path:
    """``<suite>/sweep.yaml``: the spec with every path absolute and seeds listed, the ``--config`` files given
    on the command line, how the runs were placed (executor, threads, ``runs_per_task``, devices), plus the runs
    it made (read by ``bench status`` to list runs that have not started)."""
    suite.path.mkdir(parents=True, exist_ok=True)
    data = {**spec.to_dict(), "command_line_config": [str(Path(path).resolve()) for path in cli_config_files],
            **({"placement": placement} if placement else {}), "runs": [job.name for job in jobs]}
    write_yaml(suite.sweep_file, data,
               header="# Resolved sweep spec, written by `bench run`; `bench status` reads `runs`.\n")
    return suite.sweep_file


# Shape checks -------------------------------------------------------------------------------------
def _text(value: Any, key: str, where: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{where}: {key!r} must be a string, got {value!r}")
    return str(value)


def _names(value: Any, key: str, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    raise ConfigError(f"{where}: {key!r} must be a non-empty list of names (or a comma-separated string), got {value!r}")


def _seeds(value: Any, where: str) -> list[int]:
    """A list is the seeds themselves ([3] is seed 3); a number or string reads as on the command line (3 is 0..2)."""
    if isinstance(value, list) and value and all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        if len(set(value)) != len(value) or min(value) < 0:
            raise ConfigError(f"{where}: 'seeds' {value}: seeds must be >= 0 and listed once")
        return list(value)
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return parse_seeds(str(value))
    raise ConfigError(f"{where}: 'seeds' must be a count (10), a list ([3, 5]) or a range ('0-4'), got {value!r}")


def _list(value: Any, key: str, where: str) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {key!r} must be a list, got {value!r}")
    return value


def _mapping(value: Any, key: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key!r} must be a mapping, got {value!r}")
    return value


def _sections(value: Any, key: str, where: str) -> dict[str, dict[str, Any]]:
    """``{section: {field: value}}``; which sections and fields are valid is checked at expansion."""
    sections = _mapping(value, key, where)
    for section, values in sections.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: {key}.{section} must map config keys to values, got {values!r}")
    return {str(section): dict(values) for section, values in sections.items()}


def _resolve(base: Path, item: Any) -> Path:
    path = Path(str(item)).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _relative_if_file(name: str, base: Path) -> str:
    """A protocol or preset given as a YAML path is relative to the spec; a name stays a name."""
    if name.endswith((".yaml", ".yml")):
        return str(_resolve(base, name))
    return name


GRID_DEFAULTS = {"seeds": "1", "suite": "default"}


def _resolved_if_file(name: str) -> str:
    """A preset given on the command line as a YAML path is made absolute (sweep.yaml and SLURM tasks keep it)."""
    return str(Path(name).resolve()) if name.endswith((".yaml", ".yml")) else name


def from_request(spec_path: Path | None, *, algos: str | None, envs: str | None, seeds: str | None,
                 suite: str | None, protocol: str | None, preset: str | None = None, executor: str | None = None,
                 profile: Path | None = None, plugins: Sequence[str] = (), command: str = "bench run",
                 log: str | None = None) -> SweepSpec:
    """The sweep a command names: a spec file (``--suite`` renames it; the command's preset, executor, profile and
    plugins replace or join the spec's), or the grid flags. Two ways to the same job list."""
    if spec_path is not None:
        given = [f"--{name}" for name, value in (("algos", algos), ("envs", envs), ("seeds", seeds),
                                                 ("protocol", protocol)) if value is not None]
        if given:
            raise ConfigError(f"{command} {spec_path}: {', '.join(given)} cannot be combined with a sweep spec "
                              "(the spec defines the grid; edit it or use the flag form)")
        spec = load_spec(spec_path)
        spec.name = suite or spec.name
        spec.preset = _resolved_if_file(preset) if preset else spec.preset
        spec.plugins += [name for name in plugins if name not in spec.plugins]
        spec.executor = executor or spec.executor
        spec.profile = str(Path(profile).resolve()) if profile else spec.profile
        spec.log = list(parse_log(log)) if log is not None else spec.log
        return spec
    if not (algos and envs):
        raise ConfigError(f"{command}: give a sweep spec (sweeps/*.yaml) or both --algos and --envs")
    spec = from_flags(suite=suite or GRID_DEFAULTS["suite"], algos=algos, envs=envs,
                      seeds=seeds or GRID_DEFAULTS["seeds"], protocol=protocol,
                      preset=_resolved_if_file(preset) if preset else DEFAULT_PRESET,
                      executor=executor or "local", profile=profile, plugins=plugins)
    spec.log = list(parse_log(log)) if log is not None else None
    return spec
