"""The reference tables shipped with the package: score normalization and published results.

Both are versioned YAML files in bench/data/ (see their headers for sources and how each number was made).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from algorithms.config import ConfigError
from bench import DATA_DIR



@dataclass(frozen=True)
class Normalizer:
    """score = (return - random) / (reference - random) for one environment."""
    env_id: str
    random: float
    reference: float
    reference_env: str
    steps: int
    source: str

    def __call__(self, returns):
        return (returns - self.random) / (self.reference - self.random)


@dataclass(frozen=True)
class NormalizationTable:
    version: int
    sources: dict[str, str]
    envs: dict[str, Normalizer]

    def for_env(self, env_id: str) -> Normalizer:
        if env_id not in self.envs:
            raise ConfigError(f"no normalization reference for {env_id!r} in bench/data/normalization.yaml "
                              f"(version {self.version}); it covers: {', '.join(sorted(self.envs))}. "
                              f"Use --normalize minmax (min/max over the compared runs) or --normalize none")
        return self.envs[env_id]


@dataclass(frozen=True)
class PublishedResult:
    algo: str
    env_id: str
    mean: float
    error: float
    error_kind: str
    seeds: int
    steps: str
    source: str

    @property
    def family(self) -> str:
        return env_family(self.env_id)


@dataclass(frozen=True)
class PublishedTable:
    version: int
    sources: dict[str, dict[str, str]]
    results: tuple[PublishedResult, ...]

    def matching(self, algo: str, env_id: str) -> list[PublishedResult]:
        family = env_family(env_id)
        return [row for row in self.results if row.algo == algo and row.family == family]


def env_family(env_id: str) -> str:
    """``Hopper-v5`` -> ``Hopper``: published numbers match across versions (and say which one they used)."""
    name, _, version = env_id.rpartition("-v")
    return name if name and version.isdigit() else env_id


@lru_cache(maxsize=None)
def normalization_table(path: Path = DATA_DIR / "normalization.yaml") -> NormalizationTable:
    data = yaml.safe_load(Path(path).read_text())
    envs = {}
    for env_id, row in data["envs"].items():
        if row["source"] not in data["sources"]:
            raise ConfigError(f"{path}: {env_id} cites unknown source {row['source']!r}")
        if row["reference"] == row["random"]:
            raise ConfigError(f"{path}: {env_id} has reference == random ({row['random']}), cannot normalize")
        envs[env_id] = Normalizer(env_id, float(row["random"]), float(row["reference"]), row["reference_env"],
                                  int(row["steps"]), row["source"])
    return NormalizationTable(int(data["version"]), dict(data["sources"]), envs)


@lru_cache(maxsize=None)
def published_table(path: Path = DATA_DIR / "published.yaml") -> PublishedTable:
    data = yaml.safe_load(Path(path).read_text())
    rows = []
    for row in data["results"]:
        if row["source"] not in data["sources"]:
            raise ConfigError(f"{path}: a {row['algo']} {row['env_id']} row cites unknown source {row['source']!r}")
        rows.append(PublishedResult(row["algo"], row["env_id"], float(row["mean"]), float(row["error"]),
                                    str(row["error_kind"]), int(row["seeds"]), str(row["steps"]), row["source"]))
    return PublishedTable(int(data["version"]), dict(data["sources"]), tuple(rows))
