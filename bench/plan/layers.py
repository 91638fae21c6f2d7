"""Override layers: every source of config values above an algorithm's own defaults, as one ordered list.

A layer has the shape of a ``--config`` file, ``{<algo> or 'protocol': {key: value}}``, and says where it came
from. A sweep is planned from, lowest first:

    the spec's ``config`` files  <  its ``overrides``  <  its ``env_overrides`` (that env only)
        <  ``--config`` files on the command line  <  protocol flags (``--steps`` ...)  <  ``-o key=value``

so what is typed on the command line wins over what is in a file. Below every layer sit the algorithm's
dataclass defaults and its YAML's ``default`` and env blocks (:func:`algorithms.base.resolve_config`), and the
named protocol (:func:`bench.plan.protocols.load_protocol`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import algorithms as algo_base  # lazy: torch loads when an algorithm is first looked up
from algorithms import config as cfg
from bench.plan.flags import did_you_mean

PROTOCOL = "protocol"
EVERY_ALGORITHM = "*"  # the section of a bare ``-o key=value``


@dataclass(frozen=True)
class Layer:
    source: str                                  # for messages: a file path, "-o", "sweep spec overrides"
    sections: Mapping[str, Mapping[str, Any]]    # {algo | 'protocol' | '*': {key: value}}
    env: str | None = None                       # applies to this environment only (a spec's env_overrides)
    # From -o: an algorithm section that is not selected is an error. From a file: it is ignored, so one file
    # (e.g. algorithms/configs/cpu-smoke.yaml) can serve several sweeps.
    selected_only: bool = False


@dataclass
class Routed:
    """A layer's values for the selected algorithms and the protocol, keys checked."""

    protocol: dict[str, Any] = field(default_factory=dict)
    per_algo: dict[str, dict[str, Any]] = field(default_factory=dict)


# Constructors ----------------------------------------------------------------------------------------------
def from_file(path: Path | str, flag: str = "--config") -> Layer:
    """A YAML file of overrides (``--config``, a spec's ``config``)."""
    path = Path(path)
    if not path.exists():
        raise cfg.ConfigError(f"{flag} {str(path)!r}: no such file")
    return Layer(str(path), cfg.read_yaml(path))


def from_sections(sections: Mapping[str, Mapping[str, Any]], source: str, env: str | None = None) -> Layer:
    return Layer(source, sections, env)


def from_assignments(assignments: Sequence[str]) -> Layer:
    """``-o`` overrides: ``protocol.key=v``, ``<algo>.key=v``, or a bare ``key=v`` for every selected algorithm."""
    sections: dict[str, dict[str, Any]] = {}
    for text in assignments:
        key, value = cfg.parse_override(text)
        prefix, dot, rest = key.partition(".")
        section, key = (prefix, rest) if dot else (EVERY_ALGORITHM, key)
        sections.setdefault(section, {})[key] = value
    return Layer("-o", sections, selected_only=True)


def from_protocol_flags(values: Mapping[str, Any]) -> Layer:
    return Layer("command-line flags", {PROTOCOL: dict(values)})


# Routing ---------------------------------------------------------------------------------------------------
def route(layer: Layer, algos: Sequence[str]) -> Routed:
    """The layer's values for ``algos``, every key checked against its algorithm's config."""
    routed = Routed(per_algo={algo: {} for algo in algos})
    known = set(algo_base.available_algorithms())
    for section, values in layer.sections.items():
        if not isinstance(values, Mapping):
            raise cfg.ConfigError(f"{layer.source}: section {section!r} must map keys to values")
        if section == PROTOCOL:
            routed.protocol.update(values)
            continue
        targets = _targets(layer, section, algos, known)
        for algo in targets:
            for key, value in values.items():
                _check_key(algo, key, value, algos if section == EVERY_ALGORITHM else ())
            routed.per_algo[algo].update(values)
    return routed


def _targets(layer: Layer, section: str, algos: Sequence[str], known: set[str]) -> list[str]:
    if section == EVERY_ALGORITHM:
        return list(algos)
    if section in algos:
        return [section]
    if layer.selected_only:
        raise cfg.ConfigError(f"override {section}.<key>: prefix {section!r} is neither 'protocol' nor one of the "
                              f"selected algorithms ({', '.join(algos)})")
    if section not in known:
        raise cfg.ConfigError(f"{layer.source}: unknown section {section!r}; valid sections: "
                              f"{', '.join(sorted(known | {PROTOCOL}))}")
    return []


def _check_key(algo: str, key: str, value: Any = None, all_selected: Sequence[str] = ()) -> None:
    """``key`` is a field of ``algo``'s config. ``all_selected``: the algorithms an unprefixed key was given to; a key
    only some of them have gets the prefixed form as its hint."""
    keys = algo_base.config_keys(algo)
    if key in keys:
        return
    owners = [other for other in all_selected if key in algo_base.config_keys(other)]
    if owners:
        shown = value if isinstance(value, (int, float, str, bool)) else "..."
        raise cfg.ConfigError(
            f"key {key!r} exists for {', '.join(owners)} but not for {algo!r}; to set it only there give "
            + " ".join(f"-o {owner}.{key}={shown}" for owner in owners))
    raise cfg.ConfigError(
        f"unknown key {key!r} for algorithm {algo!r}{did_you_mean(key, keys)}; valid keys: {', '.join(sorted(keys))} "
        "(protocol keys take the prefix 'protocol.', e.g. -o protocol.eval_episodes=10)"
    )


def protocol_values(layers: Sequence[Layer], algos: Sequence[str]) -> dict[str, Any]:
    """Protocol fields set by ``layers``, later ones winning. A protocol cannot differ per environment: it is what
    makes a suite's curves comparable."""
    values: dict[str, Any] = {}
    for layer in layers:
        if layer.env is not None and PROTOCOL in layer.sections:
            raise cfg.ConfigError(f"{layer.source}: a protocol cannot differ per environment; "
                                  "set it in 'overrides' or make a separate suite")
        values.update(route(layer, algos).protocol)
    return values


def algo_values(layers: Sequence[Layer], algos: Sequence[str], env_id: str,
                env_of: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per-algorithm values for ``env_id``, later layers winning key by key; ``env_of`` maps an env layer's
    ``env`` to its resolved id."""
    values: dict[str, dict[str, Any]] = {algo: {} for algo in algos}
    for layer in layers:
        if layer.env is not None and env_of[layer.env] != env_id:
            continue
        for algo, layer_values in route(layer, algos).per_algo.items():
            values[algo].update(layer_values)
    return values


def from_command_line(config_files: Sequence[Path | str], protocol_flags: Mapping[str, Any],
                      assignments: Sequence[str]) -> list[Layer]:
    """The layers a command line adds above a sweep spec: ``--config`` files, protocol flags, then ``-o``."""
    return [*(from_file(path) for path in config_files), from_protocol_flags(protocol_flags),
            from_assignments(assignments)]
