"""What a report compares: per algorithm (label), the preset and protocol its runs ran under, the env steps and
gradient updates of a run, and the config fields that differ from the algorithm's defaults (its own paper's
settings); and a warning when the compared algorithms ran under different protocols or budgets, which is when a
comparison says more about the setup than about the algorithms."""

from __future__ import annotations

import json
import numbers

import pandas as pd

from bench.report.stats import label_algos, ordered

COMPARED_COLUMNS = ["label", "algo", "runs", "preset", "protocol", "env_steps", "updates", "changed"]
# Protocol fields that make curves comparable; log_every and replay_size aside, a difference here is a different
# experiment (bench/plan/protocols.py).
PROTOCOL_FIELDS = ("total_steps", "n_envs", "utd", "warmup_steps", "eval_every", "eval_episodes", "env_version")


def compared(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per label: its runs' presets, protocols, env steps, planned updates and changed fields (each the
    distinct values, joined with " | " where runs of one label differ)."""
    rows = []
    for label in ordered(runs["label"].unique(), label_algos(runs)):
        mine = runs[runs["label"] == label]
        rows.append({"label": label, "algo": mine["algo"].iloc[0], "runs": len(mine),
                     "preset": _distinct(mine["preset"].replace("", "(none recorded)")),
                     "protocol": _distinct(mine.apply(_protocol_text, axis=1)),
                     "env_steps": _distinct(mine["planned_steps"]), "updates": _distinct(mine["planned_updates"]),
                     "changed": _distinct(mine["changed"].replace("", "-"))})
    return pd.DataFrame(rows, columns=COMPARED_COLUMNS)


def warnings(runs: pd.DataFrame) -> list[str]:
    """Differences between compared labels in protocol or budget (env steps, gradient updates)."""
    notes = []
    per_label = {label: mine for label, mine in runs.groupby("label")}
    if len(per_label) < 2:
        return notes
    protocols = {label: set(mine.apply(_protocol_key, axis=1)) for label, mine in per_label.items()}
    if len(set().union(*protocols.values())) > 1:
        detail = "; ".join(f"{label}: {' | '.join(sorted(_describe(key) for key in keys))}"
                           for label, keys in sorted(protocols.items()))
        notes.append(f"the compared algorithms ran under different protocols ({detail}): their curves and final "
                     f"scores compare setups as much as algorithms")
    for column, what in (("planned_steps", "env steps"), ("planned_updates", "gradient updates")):
        budgets = {label: set(mine[column].dropna().astype(int)) for label, mine in per_label.items()}
        if len(set().union(*budgets.values())) > 1:
            detail = ", ".join(f"{label} {'/'.join(f'{value:,}' for value in sorted(values))}"
                               for label, values in sorted(budgets.items()))
            notes.append(f"different budgets of {what} per run: {detail}")
    return notes


def _protocol_key(run: pd.Series) -> str:
    protocol = json.loads(run["protocol"]) if run["protocol"] else {}
    return json.dumps({key: protocol.get(key) for key in PROTOCOL_FIELDS}, sort_keys=True)


def _describe(key: str) -> str:
    protocol = json.loads(key)
    if any(protocol.get(name) is None for name in PROTOCOL_FIELDS if name != "env_version"):
        return ", ".join(f"{name} {value}" for name, value in protocol.items() if value is not None) or "unrecorded"
    return (f"{protocol['n_envs']} env(s), {protocol['utd']:g} updates per env step, {protocol['total_steps']:,} steps, "
            f"warm-up {protocol['warmup_steps']:,}, eval every {protocol['eval_every']:,} x {protocol['eval_episodes']}"
            + (f", -{protocol['env_version']}" if protocol.get("env_version") else ""))


def _protocol_text(run: pd.Series) -> str:
    name = run["protocol_name"] or "(unnamed)"
    return f"{name}: {_describe(_protocol_key(run))}" if run["protocol"] else name


def _distinct(values: pd.Series) -> str:
    items = [value for value in pd.unique(values) if not (isinstance(value, float) and pd.isna(value))]
    return " | ".join(_text(value) for value in items) or "-"


def _text(value) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        return str(int(value))
    return str(value)
