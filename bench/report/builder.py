"""`bench report`: collected runs -> rliable statistics, figures and tables in one folder with a report.md.

    report = make_report([Path("results/my-suite")], Path("results/my-suite/report"), ReportOptions())

Everything is derived from the run directories (read-only). The report is written to a temporary folder beside
``out`` and renamed into place at the end, so an interrupted or failed report leaves the previous one whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from algorithms.config import ConfigError
from bench.report import compared as compared_runs, normalize, plots, stats, tables
from bench.report.collect import Collected, collect
from bench.report.references import published_table

DRAFT_REPS = 100     # seconds for a 6 x 5 x 10 grid; CIs move by ~0.01 between bootstrap seeds
FINAL_REPS = 2000    # rl-baselines3-zoo / openrlbenchmark's setting for final figures


@dataclass(frozen=True)
class ReportOptions:
    normalize: str = "table"
    reps: int = DRAFT_REPS
    bootstrap_seed: int = 0
    points: int = 20                  # common grid size of interpolated curves
    include_incomplete: bool = False  # aggregates and tables use complete runs unless this is set
    include_suspect: bool = False     # DONE runs whose files disagree are left out unless this is set
    table_error: str = "ci"

    def __post_init__(self) -> None:
        if self.normalize not in normalize.METHODS:
            raise ConfigError(f"unknown normalization {self.normalize!r}; valid choices: {', '.join(normalize.METHODS)}")
        if self.table_error not in tables.ERROR_KINDS:
            raise ConfigError(f"unknown table error {self.table_error!r}; valid choices: {', '.join(tables.ERROR_KINDS)}")
        if self.reps < 1:
            raise ConfigError(f"--reps must be >= 1, got {self.reps}")
        if self.points < 2:
            raise ConfigError(f"--points must be >= 2, got {self.points}")


@dataclass
class Report:
    folder: Path
    markdown: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the comparison itself is in doubt (mixed protocols, budgets)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def make_report(paths: Sequence[Path], out: Path, options: ReportOptions = ReportOptions()) -> Report:
    start = time.perf_counter()
    collected = collect(paths, options.include_suspect)
    if collected.runs.empty:
        raise ConfigError(f"no readable runs under {', '.join(map(str, paths))}"
                          + (f" ({len(collected.skipped)} unreadable)" if collected.skipped else "")
                          + (f" ({len(collected.suspect)} suspect: --include-suspect)" if collected.suspect else ""))
    with staging_folder(out) as staging:
        report = Report(staging, staging / "report.md", skipped=collected.skipped)
        report.warnings += suspect_warnings(collected.suspect, options.include_suspect)
        report.files += collected.save(staging)
        sections = _sections(collected, staging, options, report)
        report.markdown.write_text(_markdown(paths, collected, options, report, sections))
        report.files.append(report.markdown)
    report.folder, report.markdown = out, out / report.markdown.name
    report.files = [out / path.relative_to(staging) for path in report.files]
    report.seconds = time.perf_counter() - start
    return report


def suspect_warnings(suspect: Sequence[str], included: bool) -> list[str]:
    what = "included as asked (--include-suspect)" if included else "left out of every table and figure"
    return [f"suspect run ({what}): {message}" for message in suspect]


class staging_folder:
    """``with staging_folder(out) as tmp:`` write into ``tmp``; on a clean exit ``tmp`` replaces ``out``, on any
    exception (Ctrl-C included) ``tmp`` is removed and ``out`` is as it was. Between the two renames of the swap
    the old report sits at ``.<name>.old-<pid>`` beside it."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.tmp = self.out.with_name(f".{self.out.name}.tmp-{os.getpid()}")
        self.old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")

    def __enter__(self) -> Path:
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"report folder {self.out}: is a file, not a folder (give another --out)")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        with _sigint_deferred():  # a Ctrl-C between the two renames would leave no report at ``out``
            had_previous = self.out.exists()
            if had_previous:
                os.replace(self.out, self.old)
            os.replace(self.tmp, self.out)
        if had_previous:
            shutil.rmtree(self.old, ignore_errors=True)


@contextlib.contextmanager
def _sigint_deferred():
    """Hold a SIGINT that arrives inside the block and deliver it after (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)


def _sections(collected: Collected, out: Path, options: ReportOptions, report: Report) -> dict[str, str]:
    norm = normalize.normalization(collected.evals, options.normalize)
    evals = normalize.add_scores(collected.evals, norm)
    runs = normalize.add_scores(collected.runs, norm, column="final_return")
    colors = plots.palette(runs["label"].unique(), stats.label_algos(runs))
    selection = stats.select_runs(runs, options.include_incomplete)
    report.notes += selection.notes
    report.warnings += compared_runs.warnings(runs)
    sections = {"normalization": norm.description, "compared": _compared_section(runs, out, report)}
    score_name = "normalized score" if norm.method != "none" else "return"
    if len(selection.runs):
        sections["aggregate"] = _aggregate_section(selection, evals, options, colors, out, report, score_name)
    else:
        report.notes.append("no complete run: aggregate statistics skipped (see --include-incomplete)")
    sections["per_env"] = _per_env_section(runs, evals, options, colors, out, report)
    sections["cost"] = _cost_section(runs, colors, out, report)
    return sections


def _compared_section(runs: pd.DataFrame, out: Path, report: Report) -> str:
    frame = compared_runs.compared(runs)
    frame.to_csv(out / "compared.csv", index=False)
    report.files.append(out / "compared.csv")
    return ("Per algorithm: the preset and protocol its runs ran under, the env steps and gradient updates of one "
            "run, and the config fields that differ from the algorithm's own defaults (its paper's settings, "
            "docs/algorithms.md).\n\n" + _table_markdown(frame.rename(columns={
                "label": "algorithm", "env_steps": "env steps per run", "updates": "updates per run",
                "changed": "changed from its defaults"}).drop(columns=["algo"])))


def _aggregate_section(selection, evals, options, colors, out, report, score_name) -> str:
    scores = stats.score_matrices(selection)
    reps, seed = options.reps, options.bootstrap_seed
    points, cis = stats.aggregate_estimates(scores, reps, seed)
    report.files += plots.save(plots.aggregates(points, cis, stats.AGGREGATES, colors, score_name.capitalize()),
                               out, "aggregates")
    aggregate_frame = _aggregate_frame(points, cis)
    aggregate_frame.to_csv(out / "aggregates.csv", index=False)
    report.files.append(out / "aggregates.csv")
    text = [f"Tasks: {', '.join(selection.tasks)}; runs per algorithm: "
            + ", ".join(f"{label} {scores[label].shape[0]}×{scores[label].shape[1]}" for label in selection.labels),
            "", "![aggregates](aggregates.png)", "", _aggregate_markdown(aggregate_frame)]
    probabilities, probability_cis = stats.improvement_probabilities(scores, reps, seed)
    if probabilities:
        report.files += plots.save(plots.improvement(probabilities, probability_cis, colors), out,
                                   "probability_of_improvement")
        frame = pd.DataFrame([{"x": pair.split(",")[0], "y": pair.split(",")[1], "p_x_better": float(np.ravel(value)[0]),
                               "ci_low": float(np.ravel(probability_cis[pair][0])[0]),
                               "ci_high": float(np.ravel(probability_cis[pair][1])[0])}
                              for pair, value in probabilities.items()])
        frame.to_csv(out / "probability_of_improvement.csv", index=False)
        report.files.append(out / "probability_of_improvement.csv")
        text += ["### Probability of improvement", "", "![P(X > Y)](probability_of_improvement.png)", "",
                 _table_markdown(frame.round(3))]
    taus = stats.profile_taus(scores)
    profile, profile_cis = stats.performance_profiles(scores, taus, reps, seed)
    report.files += plots.save(plots.profiles(profile, profile_cis, taus, colors, f"{score_name} (τ)"), out,
                               "performance_profile")
    text += ["### Performance profile", "", "![performance profile](performance_profile.png)", ""]
    text += _efficiency_curves(selection, evals, options, colors, out, report, score_name)
    return "\n".join(text)


def _efficiency_curves(selection, evals, options, colors, out, report, score_name) -> list[str]:
    reps, seed, n = options.reps, options.bootstrap_seed, options.points
    step_grid = stats.step_grid(selection, n)
    if step_grid[-1] <= 0:
        return ["(no evaluation after step 0: sample-efficiency curves skipped)"]
    step_curves = stats.curve_matrices(selection, evals, "step", {label: step_grid for label in selection.labels})
    points, cis = stats.curve_estimates(step_curves, reps, seed)
    scale, unit = _step_unit(step_grid[-1])
    report.files += plots.save(plots.curves({label: step_grid for label in points}, points, cis, colors,
                                            f"env steps ({unit})", f"IQM {score_name}", scale), out,
                               "sample_efficiency_steps")
    time_grids = stats.wallclock_grids(selection, evals, n)
    time_curves = stats.curve_matrices(selection, evals, "wall_time_s", time_grids)
    points, cis = stats.curve_estimates(time_curves, reps, seed)
    report.files += plots.save(plots.curves(time_grids, points, cis, colors, "wall-clock (hours)",
                                            f"IQM {score_name}", 1 / 3600), out, "sample_efficiency_walltime")
    return ["### Sample efficiency", "",
            f"IQM of the {score_name} over runs and tasks on a common grid of {n} points (each run linearly "
            f"interpolated between its evaluations), 95 % stratified-bootstrap CIs. By env steps, up to the last "
            f"step every selected run reached ({int(step_grid[-1])}); by wall-clock, each algorithm up to the time "
            f"its fastest run finished.", "",
            "![IQM vs env steps](sample_efficiency_steps.png) ![IQM vs wall-clock](sample_efficiency_walltime.png)", ""]


def _per_env_section(runs, evals, options, colors, out, report) -> str:
    report.files += plots.save(plots.env_panels(stats.env_curves(evals, max(options.points, 50)), colors), out,
                               "learning_curves")
    pool = runs if options.include_incomplete else runs[runs["complete"]]
    text = ["![learning curves](learning_curves.png)", "",
            "Mean evaluation return over seeds with its 95 % Student-t band; every run, incomplete ones up to "
            "their last evaluation.", ""]
    if pool.empty:
        return "\n".join(text + ["(no complete run: no final-return table)"])
    summary = tables.final_returns(pool, options.table_error)
    summary.to_csv(out / "final_returns.csv", index=False)
    published = published_table()
    table = tables.final_returns_table(summary, options.table_error, published)
    (out / "final_returns.md").write_text(table.markdown())
    (out / "final_returns.tex").write_text(table.latex())
    report.files += [out / "final_returns.csv", out / "final_returns.md", out / "final_returns.tex"]
    rows = [row for algo in summary["algo"].unique() for env in summary["env_id"].unique()
            for row in published.matching(algo, env)]
    sources = "\n".join(f"- **{name}**: {source['citation']}. Protocol: {source['protocol']}."
                        for name, source in published.sources.items() if any(row.source == name for row in rows))
    for algo in stats.ordered(summary["algo"].unique()):
        if not any(row.algo == algo for row in published.results):
            report.notes.append(f"no published per-env numbers for {algo} in bench/data/published.yaml")
    published_note = (f"The published column (bench/data/published.yaml, version {published.version}) lists "
                      f"numbers reported for the same environment family; they were measured under other "
                      f"protocols:" if sources else "No published numbers match these environments.")
    return "\n".join(text + [f"Final return: {table.caption}.", "", table.markdown(), published_note, "", sources, ""])


def _cost_section(runs, colors, out, report) -> str:
    frame = tables.cost(runs)
    if frame.empty:
        return "(no complete run: no cost figures)"
    frame.to_csv(out / "cost.csv", index=False)
    table = tables.cost_table(frame)
    (out / "cost.md").write_text(table.markdown())
    (out / "cost.tex").write_text(table.latex())
    report.files += [out / "cost.csv", out / "cost.md", out / "cost.tex"]
    report.files += plots.save(plots.cost_bars(frame, colors), out, "cost")
    return "\n".join(["![cost](cost.png)", "", table.markdown(),
                      "Env steps/s after warm-up, evaluation excluded; wall-clock includes every attempt of a "
                      "resumed run (docs/results-format.md)."])


def _aggregate_frame(points: dict, cis: dict) -> pd.DataFrame:
    return pd.DataFrame([{"label": label, "metric": metric, "estimate": points[label][i],
                          "ci_low": cis[label][0][i], "ci_high": cis[label][1][i]}
                         for label in points for i, metric in enumerate(stats.AGGREGATES)])


def _aggregate_markdown(frame: pd.DataFrame) -> str:
    cells = frame.assign(value=lambda f: f.apply(lambda r: f"{r.estimate:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]",
                                                 axis=1))
    wide = cells.pivot(index="label", columns="metric", values="value")
    wide = wide.loc[list(dict.fromkeys(frame["label"])), list(stats.AGGREGATES)].reset_index()
    return _table_markdown(wide.rename(columns={"label": "algorithm"}))


def _table_markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return header + "".join("| " + " | ".join(map(str, row)) + " |\n" for row in frame.itertuples(index=False))


def _step_unit(largest: float) -> tuple[float, str]:
    return (1e-6, "millions") if largest >= 1e6 else (1e-3, "thousands")


def _markdown(paths, collected: Collected, options: ReportOptions, report: Report, sections: dict) -> str:
    runs = collected.runs
    status = runs["status"].value_counts().to_dict()
    lines = [f"# Report: {', '.join(Path(p).name for p in paths)}", "",
             f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by `bench report` from "
             f"{len(runs)} runs ({', '.join(f'{n} {s}' for s, n in sorted(status.items()))}) in "
             f"{', '.join(map(str, paths))}.", "",
             f"- **Normalization**: {sections['normalization']}",
             f"- **Statistics**: rliable stratified bootstrap, {options.reps} replications, seed "
             f"{options.bootstrap_seed}, 95 % percentile CIs"
             + (" (draft setting; `--final` for publication)" if options.reps < FINAL_REPS else ""),
             f"- **Options**: `{json.dumps(asdict(options))}`"]
    if report.warnings:
        lines += ["", "**Warnings:**", ""] + [f"- {warning}" for warning in report.warnings]
    if report.skipped:
        lines += ["", "**Unreadable runs skipped:**", ""] + [f"- {reason}" for reason in report.skipped]
    if report.notes:
        lines += ["", "**Notes on the data:**", ""] + [f"- {note}" for note in report.notes]
    lines += ["", "## What was compared", "", sections["compared"]]
    if "aggregate" in sections:
        lines += ["", "## Aggregate metrics", "", sections["aggregate"]]
    lines += ["", "## Per environment", "", sections["per_env"], "", "## Cost", "", sections["cost"], ""]
    return "\n".join(lines)


def default_output(paths: Sequence[Path]) -> Path:
    """``<suite>/report`` for one folder; ``<parent>/report-<a>+<b>`` for several."""
    if len(paths) == 1:
        return Path(paths[0]) / "report"
    return Path(paths[0]).parent / ("report-" + "+".join(Path(p).name for p in paths))

