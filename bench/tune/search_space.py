"""Search spaces of `bench tune` as data: ``algorithms/configs/search/<algo>.yaml`` (or any file given with
``--search``), one entry per config key of the algorithm, in sampling order::

    actor_lr: {low: 1.0e-4, high: 3.0e-3, log: true}   # float; int when both bounds are integers; `step`: a grid
    batch_size: {choices: [64, 128, 256]}               # categorical; choices may be lists (network widths)
    init_alpha: {low: 0.01, high: 1.0, log: true, when: {autotune_alpha: false}}   # conditional on an earlier key

Every key must be a field of the algorithm's config, and every bound and choice must make a valid config, so a
typo fails before any trial runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import algorithms as algo_base
from algorithms.config import ConfigError, read_yaml
from bench.plan.flags import did_you_mean

SEARCH_DIR = Path(algo_base.__file__).parent / "configs" / "search"
ENTRY_KEYS = ("low", "high", "log", "step", "choices", "when")


@dataclass(frozen=True)
class Param:
    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    when: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if self.choices:
            return "categorical"
        return "int" if all(_is_int(value) for value in (self.low, self.high)) else "float"

    def active(self, sampled: Mapping[str, Any]) -> bool:
        return all(key in sampled and sampled[key] == value for key, value in self.when.items())

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            # Optuna stores only None/bool/int/float/str choices; lists travel as their JSON text.
            labels = [_label(choice) for choice in self.choices]
            return self.choices[labels.index(trial.suggest_categorical(self.name, labels))]
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def decode(self, stored: Any) -> Any:
        """A stored Optuna parameter value back to the config value."""
        if self.kind != "categorical":
            return stored
        return self.choices[[_label(choice) for choice in self.choices].index(stored)]

    def extremes(self) -> list[Any]:
        return list(self.choices) if self.choices else [self.low, self.high]


@dataclass(frozen=True)
class SearchSpace:
    algo: str
    source: str
    params: tuple[Param, ...]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Config values for one trial; conditional keys whose condition does not hold are left out."""
        sampled: dict[str, Any] = {}
        for param in self.params:
            if param.active(sampled):
                sampled[param.name] = param.suggest(trial)
        return sampled

    def decode(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        by_name = {param.name: param for param in self.params}
        return {name: by_name[name].decode(value) if name in by_name else value for name, value in stored.items()}


def default_path(algo: str) -> Path:
    return SEARCH_DIR / f"{algo}.yaml"


def load_search_space(algo: str, path: Path | str | None = None) -> SearchSpace:
    algo = algo_base.get_algorithm(algo).name
    path = Path(path) if path is not None else default_path(algo)
    if not path.is_file():
        shipped = sorted(item.stem for item in SEARCH_DIR.glob("*.yaml"))
        raise ConfigError(f"no search space for {algo!r}: {str(path)!r} does not exist (shipped search spaces: "
                          f"{', '.join(shipped)}); write one or pass --search FILE")
    data = read_yaml(path) or {}
    where = f"search space {path}"
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{where}: must map config keys to ranges or choices")
    valid = algo_base.config_keys(algo)
    params: list[Param] = []
    for name, entry in data.items():
        if name not in valid:
            raise ConfigError(f"{where}: unknown key {name!r} for algorithm {algo!r}{did_you_mean(name, valid)}; valid keys: "
                              f"{', '.join(sorted(valid))}")
        params.append(_param(str(name), entry, [param.name for param in params], f"{where}: {name}"))
    for param in params:  # every bound and choice alone must make a valid config
        for value in param.extremes():
            try:
                algo_base.resolve_config(algo, None, {param.name: value})
            except ConfigError as error:
                raise ConfigError(f"{where}: {param.name}: {value!r} makes an invalid config ({error})") from None
    return SearchSpace(algo, str(path), tuple(params))


def _param(name: str, entry: Any, earlier: list[str], where: str) -> Param:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected {{low, high[, log, step]}} or {{choices: [...]}}, got {entry!r}")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}"
                          f"{did_you_mean(unknown[0], ENTRY_KEYS)}; valid: {', '.join(ENTRY_KEYS)}")
    when = entry.get("when") or {}
    if not isinstance(when, dict) or any(key not in earlier for key in when):
        raise ConfigError(f"{where}: 'when' must map keys listed earlier in the file ({', '.join(earlier) or 'none'}) "
                          f"to values, got {when!r}")
    if "choices" in entry:
        choices = entry["choices"]
        if set(entry) & {"low", "high", "log", "step"}:
            raise ConfigError(f"{where}: give either choices or low/high, not both")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list, got {choices!r}")
        choices = [tuple(choice) if isinstance(choice, list) else choice for choice in choices]
        if len({_label(choice) for choice in choices}) != len(choices):
            raise ConfigError(f"{where}: a choice is listed twice in {entry['choices']!r}")
        return Param(name, choices=tuple(choices), when=dict(when))
    low, high = entry.get("low"), entry.get("high")
    if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in (low, high)):
        raise ConfigError(f"{where}: low and high must be numbers, got low={low!r}, high={high!r}")
    if not low < high:
        raise ConfigError(f"{where}: low must be below high, got low={low}, high={high}")
    log = bool(entry.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got {low}")
    step = entry.get("step")
    if step is not None and log:
        raise ConfigError(f"{where}: give either log or step, not both")
    if step is not None and not (isinstance(step, (int, float)) and not isinstance(step, bool)
                                 and 0 < step <= high - low):
        raise ConfigError(f"{where}: step must be a number in (0, high - low = {high - low}], got {step!r}")
    return Param(name, low=low, high=high, log=log, step=step, when=dict(when))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _label(choice: Any) -> Any:
    return json.dumps(list(choice)) if isinstance(choice, (list, tuple)) else choice
