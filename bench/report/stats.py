"""Statistics over collected runs: which runs enter, score matrices, and rliable's interval estimates.

Unequal data is handled the way rliable's data shape demands and the report says so (``Selection.notes``):
- aggregates compare algorithms on the environments every algorithm has runs on;
- within an algorithm every environment must have the same number of runs: it is truncated to its common
  minimum, keeping the lowest seed numbers (rl-baselines3-zoo and openrlbenchmark do the same);
- curves of different lengths or eval grids are linearly interpolated onto a common grid (as
  openrlbenchmark does with ``np.interp``); a grid point after a run's last evaluation is never extrapolated.

All statistics come from rliable (stratified bootstrap, percentile CIs) with a fixed bootstrap seed, so the
same records give the same report.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from dataclasses import dataclass, field

from typing import Mapping

import numpy as np
import pandas as pd
from rliable import library as rly
from rliable import metrics
from scipy import stats as scipy_stats

AGGREGATES = ("IQM", "Mean", "Median", "Optimality Gap")
# The order of tables, legends and colours: the built-in agents, the SDAC paper's later baselines last.
KNOWN_ORDER = ("sac", "sdac", "dpmd", "dacer", "dacer2", "cpql", "td3", "qsm", "dipo", "qvpo")


def ordered(labels, algo_of: Mapping[str, str] | None = None) -> list[str]:
    """Known algorithms first in KNOWN_ORDER, then the rest by name; a variant (``algo_of`` maps its label to its
    algorithm, see :func:`label_algos`) stands beside its algorithm. Without ``algo_of`` labels are algorithms."""
    algo_of = algo_of or {}

    def key(label: str) -> tuple:
        base = algo_of.get(label, label)
        return (KNOWN_ORDER.index(base) if base in KNOWN_ORDER else len(KNOWN_ORDER), base, label)
    return sorted(set(labels), key=key)


def label_algos(frame: pd.DataFrame) -> dict[str, str]:
    """label -> algorithm, from a collected table's ``label`` and ``algo`` columns."""
    return dict(zip(frame["label"], frame["algo"]))


# Two statistics are evaluated thousands of times per report (once per bootstrap replicate), and rliable's
# versions loop in Python: metrics.probability_of_improvement calls scipy's Mann-Whitney test once per task
# (7,500 calls for 6 algorithms x 5 envs x 100 replicates: most of a report's time), and an IQM curve calls
# metrics.aggregate_iqm once per grid point. These are the same quantities in one array operation each;
# tests/report/test_report.py checks them against rliable's functions. Bootstrapping is rliable's.

def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y) per task (Mann-Whitney U / (n_x n_y), ties count 1/2), averaged over tasks: rliable's
    metrics.probability_of_improvement, vectorized."""
    pairs_x, pairs_y = scores_x[:, None, :], scores_y[None, :, :]
    per_task = (pairs_x > pairs_y).mean(axis=(0, 1)) + 0.5 * (pairs_x == pairs_y).mean(axis=(0, 1))
    return float(per_task.mean())


def iqm_per_point(scores: np.ndarray) -> np.ndarray:
    """metrics.aggregate_iqm (25 % trimmed mean over runs x tasks) of every ``scores[..., point]``."""
    return scipy_stats.trim_mean(scores.reshape(-1, scores.shape[-1]), proportiontocut=0.25, axis=0)


def aggregate_vector(scores: np.ndarray) -> np.ndarray:
    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores),
                     metrics.aggregate_median(scores), metrics.aggregate_optimality_gap(scores)])


@dataclass
class Selection:
    """The runs that enter the aggregate statistics, and why others do not."""
    runs: pd.DataFrame                 # one row per selected run, with a normalized `score` of its final eval
    labels: list[str]
    tasks: list[str]
    notes: list[str] = field(default_factory=list)


def select_runs(runs: pd.DataFrame, include_incomplete: bool = False) -> Selection:
    """Complete runs (or all, if asked) on the tasks common to every label, truncated to equal seed counts."""
    notes = []
    pool = runs if include_incomplete else runs[runs["complete"]]
    if len(pool) < len(runs):
        left_out = runs[~runs["complete"]]
        names = ", ".join(f"{r.label}/{r.env_id}/seed={r.seed} ({r.status}, last evaluation at step {r.last_step})"
                          for r in left_out.itertuples())
        notes.append(f"{len(left_out)} incomplete run(s) left out of the aggregates (shown in the per-env curves "
                     f"up to their last evaluation): {names}")
    elif (~runs["complete"]).any():
        notes.append(f"{int((~runs['complete']).sum())} incomplete run(s) included with their last evaluation "
                     f"as final score (--include-incomplete)")
    labels = ordered(pool["label"].unique(), label_algos(pool))
    per_label_tasks = [set(pool.loc[pool["label"] == label, "env_id"]) for label in labels]
    tasks = sorted(set.intersection(*per_label_tasks)) if per_label_tasks else []
    dropped = sorted(set(pool["env_id"]) - set(tasks))
    if dropped:
        notes.append(f"environment(s) {', '.join(dropped)} left out of the aggregates: not every algorithm has a "
                     f"run there (they still get per-env curves and table rows)")
    chosen = []
    for label in labels:
        mine = pool[(pool["label"] == label) & pool["env_id"].isin(tasks)]
        counts = mine.groupby("env_id").size()
        keep = int(counts.min()) if len(counts) else 0
        if len(counts) and counts.max() != keep:
            detail = ", ".join(f"{env}: {n}" for env, n in counts.items())
            notes.append(f"{label}: unequal seeds per env ({detail}); truncated to the common minimum of {keep}, "
                         f"keeping the lowest seed numbers")
        chosen.append(mine.sort_values("seed").groupby("env_id", group_keys=False).head(keep))
    selected = pd.concat(chosen, ignore_index=True) if chosen else pool.iloc[:0]
    for task in tasks:  # a final score is the last evaluation, whatever the budget: say when budgets differ
        steps = selected[selected["env_id"] == task].groupby("label")["last_step"].agg(["min", "max"])
        if len(steps) and steps["min"].min() != steps["max"].max():
            order = ordered(steps.index, label_algos(selected))
            detail = ", ".join(f"{label} {int(low)}" if low == high else f"{label} {int(low)}-{int(high)}"
                               for label, (low, high) in steps.loc[order].iterrows())
            notes.append(f"{task}: final evaluations at different env steps ({detail}); the final scores compare "
                         f"different budgets")
    return Selection(selected, labels, tasks, notes)


def score_matrices(selection: Selection, column: str = "score") -> dict[str, np.ndarray]:
    """rliable's input: label -> array (runs, tasks) of final normalized scores."""
    matrices = {}
    for label in selection.labels:
        mine = selection.runs[selection.runs["label"] == label]
        columns = [mine.loc[mine["env_id"] == task].sort_values("seed")[column].to_numpy() for task in selection.tasks]
        matrices[label] = np.stack(columns, axis=1)
    return matrices


def interpolate_run(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``y(x)`` linearly interpolated at ``grid``; NaN after the run's last point (no extrapolation)."""
    values = np.interp(grid, x, y)
    values[grid > x[-1] + 1e-9] = np.nan
    return values


def curve_matrices(selection: Selection, evals: pd.DataFrame, x: str, grids: dict[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
    """label -> array (runs, tasks, points) of normalized scores at ``grids[label]`` along column ``x``."""
    by_run = {key: group for key, group in evals.groupby(["label", "env_id", "seed"])}
    curves = {}
    for label in selection.labels:
        mine = selection.runs[selection.runs["label"] == label]
        per_task = []
        for task in selection.tasks:
            seeds = sorted(mine.loc[mine["env_id"] == task, "seed"])
            per_task.append(np.stack([interpolate_run(by_run[label, task, seed][x].to_numpy(),
                                                      by_run[label, task, seed]["score"].to_numpy(), grids[label])
                                      for seed in seeds]))
        curves[label] = np.stack(per_task, axis=1)
    return curves


def step_grid(selection: Selection, points: int) -> np.ndarray:
    """Env-step grid shared by every algorithm: 0 .. the last step that every selected run reached."""
    return np.linspace(0, selection.runs["last_step"].min(), points)


def wallclock_grids(selection: Selection, evals: pd.DataFrame, points: int) -> dict[str, np.ndarray]:
    """Per algorithm, seconds 0 .. the earliest last-evaluation time among its selected runs (so every run has
    a value at every point): each algorithm's curve spans the time its runs took, a slower one's is longer."""
    keys = selection.runs.set_index(["label", "env_id", "seed"]).index
    last_eval_time = evals.set_index(["label", "env_id", "seed"]).loc[keys].groupby(level=[0, 1, 2])["wall_time_s"].max()
    ends = last_eval_time.groupby(level=0).min()
    return {label: np.linspace(0, float(ends[label]), points) for label in selection.labels}


def _quiet(function, *args, **kwargs):
    # arch warns that `random_state` will change type in a future version; rliable 1.2 passes it through.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return function(*args, **kwargs)


@contextlib.contextmanager
def _global_numpy_seed(seed: int):
    """Seed NumPy's global generator for the duration, then put its previous state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def interval_estimates(score_dict: dict, func, reps: int, seed: int) -> tuple[dict, dict]:
    # rliable 1.2's StratifiedBootstrap.update_indices draws the resampled run indices from the global
    # np.random, not from the random_state handed to it: without seeding that too, the same records gave
    # different CIs from call to call. Seeded again for each key, so that a label's CI does not depend on which
    # other labels are in the report (adding an algorithm leaves the others' intervals as they were).
    points, cis = {}, {}
    with _global_numpy_seed(seed):
        for key, scores in score_dict.items():
            np.random.seed(seed)
            point, ci = _quiet(rly.get_interval_estimates, {key: scores}, func, reps=reps,
                               random_state=np.random.RandomState(seed))
            points.update(point)
            cis.update(ci)
    return points, cis


def aggregate_estimates(scores: dict[str, np.ndarray], reps: int, seed: int) -> tuple[dict, dict]:
    """IQM, mean, median, optimality gap (in AGGREGATES order) with 95 % stratified-bootstrap CIs."""
    return interval_estimates(scores, aggregate_vector, reps, seed)


def improvement_probabilities(scores: dict[str, np.ndarray], reps: int, seed: int) -> tuple[dict, dict]:
    """P(X > Y) for every pair of labels in the order of ``scores`` (X before Y), keyed "X,Y" (rliable's
    convention)."""
    pairs = {f"{x},{y}": (scores[x], scores[y]) for x, y in itertools.combinations(scores, 2)}
    if not pairs:
        return {}, {}
    return interval_estimates(pairs, probability_of_improvement, reps, seed)


def performance_profiles(scores: dict[str, np.ndarray], taus: np.ndarray, reps: int, seed: int) -> tuple[dict, dict]:
    """Fraction of runs with score > tau, with CIs (rliable's score distribution, seeded bootstrap)."""
    return interval_estimates(scores, lambda s: rly.score_distributions(s, taus), reps, seed)


def curve_estimates(curves: dict[str, np.ndarray], reps: int, seed: int) -> tuple[dict, dict]:
    """IQM at every grid point (sample-efficiency curves)."""
    return interval_estimates(curves, iqm_per_point, reps, seed)


def profile_taus(scores: dict[str, np.ndarray], points: int = 81) -> np.ndarray:
    values = np.concatenate([matrix.ravel() for matrix in scores.values()])
    return np.linspace(min(0.0, float(values.min())), max(1.0, float(values.max())), points)


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, lower, upper): Student-t interval over seeds, NaN-aware; a single value has no interval."""
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    if n == 1:
        return mean, np.nan, np.nan
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half


def env_curves(evals: pd.DataFrame, points: int) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]:
    """Per env, per label: (grid, mean, lower, upper) of raw returns over seeds, every run included up to its
    last evaluation; the grid spans 0 .. the env's longest run."""
    result: dict = {}
    for env, env_evals in evals.groupby("env_id"):
        grid = np.linspace(0, env_evals["step"].max(), points)
        result[env] = {}
        for label, label_evals in env_evals.groupby("label"):
            runs = np.stack([interpolate_run(run["step"].to_numpy(), run["return"].to_numpy(), grid)
                             for _, run in label_evals.groupby("seed")])
            stats = np.array([mean_ci(runs[:, point]) for point in range(points)])
            result[env][label] = (grid, stats[:, 0], stats[:, 1], stats[:, 2])
    return result
