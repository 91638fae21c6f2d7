"""Normalized scores, so that returns of different environments can be aggregated.

- ``table``: (return - random) / (reference - random) with the shipped, versioned reference table
  (bench/data/normalization.yaml): 0 = uniform random policy, 1 = the published SAC reference (DeepMind Control:
  the maximum return, 1000). Numbers do not change when an algorithm is added to the comparison.
- ``minmax``: (return - min) / (max - min), min and max over every evaluation of every compared run on that
  environment (openrlbenchmark's "maxmin"): needs no reference, but changes when the set of runs changes.
- ``none``: raw returns (only meaningful for a single environment).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from algorithms.config import ConfigError
from bench.report.references import normalization_table

METHODS = ("table", "minmax", "none")


@dataclass(frozen=True)
class Normalization:
    method: str
    description: str          # one line for the report: what 0 and 1 mean and where the numbers come from
    bounds: dict[str, tuple[float, float]]   # env_id -> (score-0 return, score-1 return)


def normalization(evals: pd.DataFrame, method: str) -> Normalization:
    """The per-environment bounds for ``method`` over the environments in ``evals``."""
    if method not in METHODS:
        raise ConfigError(f"unknown normalization {method!r}; valid choices: {', '.join(METHODS)}")
    envs = sorted(evals["env_id"].unique())
    if method == "table":
        table = normalization_table()
        bounds = {env: (table.for_env(env).random, table.for_env(env).reference) for env in envs}
        description = (f"reference table version {table.version} (bench/data/normalization.yaml): "
                       f"0 = uniform random policy, 1 = published SAC reference return "
                       f"(DeepMind Control: the maximum return, 1000)")
    elif method == "minmax":
        grouped = evals.groupby("env_id")["return"]
        bounds = {env: (float(grouped.min()[env]), float(grouped.max()[env])) for env in envs}
        description = "min-max over the compared runs: 0 / 1 = lowest / highest evaluation return on each env"
    else:
        bounds = {env: (0.0, 1.0) for env in envs}
        description = "none: raw returns"
    for env, (low, high) in bounds.items():
        if high == low:
            raise ConfigError(f"cannot normalize {env}: every return equals {low}; use --normalize none")
    return Normalization(method, description, bounds)


def add_scores(frame: pd.DataFrame, norm: Normalization, column: str = "return", out: str = "score") -> pd.DataFrame:
    """``frame`` with a normalized ``out`` column computed from ``column``."""
    low = frame["env_id"].map(lambda env: norm.bounds[env][0])
    high = frame["env_id"].map(lambda env: norm.bounds[env][1])
    return frame.assign(**{out: (frame[column] - low) / (high - low)})
