"""Presets: a paper's comparison as data. A preset names a protocol and, per algorithm, the config layer that makes
that algorithm run as the paper ran it (``bench/data/presets/<name>.yaml``, a source comment on every value).

    bench run --preset sdac-paper --algos sac,sdac,dpmd --envs Ant,Humanoid --seeds 10

A preset is the lowest override layer: it sits right above an algorithm's own defaults (dataclass, then its YAML's
``default`` and env blocks), so ``--config``, a spec's ``overrides`` and ``-o`` still apply on top. Its protocol is
the sweep's protocol unless ``--protocol`` (or a spec's ``protocol:``) names another; its ``protocol_overrides``
apply whenever its protocol is the one run. An algorithm a preset does not list runs at its own defaults. docs/protocols.md says what each preset reproduces and which comparisons are fair
under it.

    description: one line for `bench list`
    reproduces: what a run under it reproduces, with its sources
    protocol: sdac-paper               # a protocol name (bench/data/protocols) ...
    protocol_overrides: {env_version: v4}   # ... and fields changed on top of it
    algorithms:                        # per algorithm, a config layer ({key: value}), every env
      sac: {hidden: [256, 256, 256]}
    env_algorithms:                    # per env family (Humanoid) or id (Humanoid-v4), then algorithm
      Humanoid: {dacer: {hidden: [512, 512, 512]}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from algorithms.base import env_blocks
from algorithms.config import ConfigError, read_yaml
from bench import DATA_DIR
from bench.plan.flags import did_you_mean
from bench.plan.layers import Layer

PRESET_DIR = DATA_DIR / "presets"
DEFAULT_PRESET = "sdac-paper"
NO_PRESET = "none"  # every algorithm at its own defaults, the protocol alone
PRESET_KEYS = ("description", "reproduces", "protocol", "protocol_overrides", "algorithms", "env_algorithms")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str = ""
    reproduces: str = ""
    protocol: str | None = None
    protocol_overrides: Mapping[str, Any] = field(default_factory=dict)
    algorithms: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    env_algorithms: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    def layers(self, env_ids: Sequence[str]) -> list[Layer]:
        """Its config layers for a sweep over ``env_ids``: every env, then the env blocks that match (a family
        block before a full-id block, as in an algorithm's YAML)."""
        source = f"preset {self.name}"
        found = [Layer(source, _registered(self.algorithms))] if self.algorithms else []
        for env_id in env_ids:
            found += [Layer(f"{source}, env_algorithms.{block}", _registered(self.env_algorithms[block]), env=env_id)
                      for block in env_blocks(env_id) if block in self.env_algorithms]
        return found

    def covers(self, algo: str) -> bool:
        return algo in self.algorithms or any(algo in sections for sections in self.env_algorithms.values())


def _registered(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The sections of algorithms that exist here: a preset may list an algorithm this install does not have."""
    import algorithms

    known = set(algorithms.available_algorithms())
    return {algo: values for algo, values in sections.items() if algo in known}


def available_presets() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def load_preset(name_or_path: str | None) -> Preset:
    """A shipped preset by name, a preset YAML by path, or ``none`` (no preset)."""
    if name_or_path in (None, NO_PRESET):
        return Preset(NO_PRESET, description="no preset: every algorithm at its own defaults")
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown preset {name_or_path!r}{did_you_mean(name_or_path, available_presets())}; valid choices: "
                          f"{', '.join([*available_presets(), NO_PRESET])} (or a path to a preset YAML file)")
    data = read_yaml(path)
    unknown = sorted(set(data) - set(PRESET_KEYS))
    if unknown:
        raise ConfigError(f"preset {path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(PRESET_KEYS)}")
    return Preset(name=path.stem if path.parent == PRESET_DIR else str(path),
                  description=str(data.get("description", "")), reproduces=str(data.get("reproduces", "")),
                  protocol=data.get("protocol"), protocol_overrides=dict(data.get("protocol_overrides") or {}),
                  algorithms=_sections(data.get("algorithms"), "algorithms", path),
                  env_algorithms={str(env): _sections(sections, f"env_algorithms.{env}", path)
                                  for env, sections in (data.get("env_algorithms") or {}).items()})


def _sections(value: Any, key: str, path: Path) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(values, dict) for values in value.values()):
        raise ConfigError(f"preset {path}: {key!r} must map algorithm names to {{key: value}} mappings")
    return {str(algo): dict(values) for algo, values in value.items()}


# Filled in by the harness from the protocol (bench.plan.expand), not a setting anyone chose.
HARNESS_FIELDS = ("planned_updates",)


def departures(algo: str, env_id: str, agent_config: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields of ``agent_config`` that differ from the algorithm's defaults for ``env_id`` (its dataclass and YAML:
    its own paper's or released code's settings, docs/algorithms.md): ``{field: (default, value)}``."""
    from algorithms import config as cfg, resolve_config

    defaults = cfg.to_dict(resolve_config(algo, env_id))
    return {key: (defaults.get(key), value) for key, value in agent_config.items()
            if key not in HARNESS_FIELDS and _plain(defaults.get(key)) != _plain(value)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
