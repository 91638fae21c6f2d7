"""A study's results: the best parameters as a `bench run --config` file, the best trials, parameter importances
and Optuna's plots."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from algorithms.config import ConfigError
from bench.tune.search_space import load_search_space
from bench.tune.study import SETTINGS_ATTR, state_counts

IMPORTANCE = optuna.importance.PedAnovaImportanceEvaluator  # Optuna 5's default: fast, no model to fit


def best_overrides(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """The best trial's parameters as a `bench run --config` file: ``{algo: {key: value}}``."""
    recorded = study.user_attrs.get(SETTINGS_ATTR) or {}
    algo = recorded.get("algo")
    if algo is None:
        raise ConfigError(f"study {study.study_name!r} was not made by `bench tune` (no recorded settings)")
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        raise ConfigError(f"study {study.study_name!r} has no complete trial yet: nothing to export")
    space = load_search_space(algo, recorded.get("search"))
    params = space.decode(study.best_trial.params)
    return {algo: {key: list(value) if isinstance(value, tuple) else value for key, value in params.items()}}


def export(study: optuna.Study, path: Path) -> Path:
    best = study.best_trial
    header = (f"# Best parameters of study {study.study_name!r}: trial {best.number}, objective {best.value:.4f}\n"
              f"# (written by `bench tune --export`; use with `bench run --config {path.name}`)\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(best_overrides(study), sort_keys=False))
    return path


@dataclass
class StudySummary:
    counts: dict[str, int]
    best: list[dict[str, Any]]
    importances: dict[str, float] | None
    importance_note: str
    plots: list[Path]


def summarize(study: optuna.Study, plots_dir: Path, top: int = 5) -> StudySummary:
    completed = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                       key=lambda trial: trial.value, reverse=True)
    best = [{"trial": trial.number, "value": trial.value, "params": trial.params,
             "seconds": (trial.datetime_complete - trial.datetime_start).total_seconds()} for trial in completed[:top]]
    importances, note = None, ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "few trials in a regime": the table says how many trials
        try:
            importances = (dict(optuna.importance.get_param_importances(study, evaluator=IMPORTANCE()))
                           if len(completed) >= 2 else None)
            note = "" if importances is not None else "needs at least 2 complete trials"
        except (RuntimeError, ValueError) as error:
            note = str(error)
        plots = save_plots(study, plots_dir, importances)
    return StudySummary(state_counts(study), best, importances, note, plots)


def save_plots(study: optuna.Study, plots_dir: Path, importances: dict[str, float] | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    plots_dir.mkdir(parents=True, exist_ok=True)
    makers = {"history": vis.plot_optimization_history, "intermediate": vis.plot_intermediate_values}
    if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        makers["slice"] = vis.plot_slice
    if importances:
        makers["importances"] = lambda study: vis.plot_param_importances(study, evaluator=IMPORTANCE())
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, maker in makers.items():
            axes = maker(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.savefig(plots_dir / f"{name}.png", dpi=110, bbox_inches="tight")
            plt.close(figure)
            written.append(plots_dir / f"{name}.png")
    return written


