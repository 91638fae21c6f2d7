"""Tables for `bench report`: per-env final returns (with published numbers alongside) and run cost.

Each table is built once as a :class:`TextTable` (cells as strings plus which to bold) and rendered as
Markdown and LaTeX (booktabs); the CSV next to it holds the same numbers unformatted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from bench.report.references import PublishedTable
from bench.report.stats import label_algos, mean_ci, ordered

ERROR_KINDS = ("ci", "std")


@dataclass
class TextTable:
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)    # (row, column) cells to bold
    caption: str = ""

    def markdown(self) -> str:
        def cell(r: int, c: int, text: str) -> str:
            return f"**{text}**" if (r, c) in self.bold else text
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(cell(r, c, text) for c, text in enumerate(row)) + " |"
                  for r, row in enumerate(self.rows)]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        def cell(r: int, c: int, text: str) -> str:
            text = _latex_escape(text)
            return f"\\textbf{{{text}}}" if (r, c) in self.bold else text
        spec = "l" + "r" * (len(self.header) - 1)
        lines = [f"% {self.caption}" if self.caption else "", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                 " & ".join(_latex_escape(h) for h in self.header) + " \\\\", "\\midrule"]
        lines += [" & ".join(cell(r, c, text) for c, text in enumerate(row)) + " \\\\" for r, row in enumerate(self.rows)]
        lines += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(line for line in lines if line) + "\n"


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", "\\textbackslash{}"), ("&", "\\&"), ("%", "\\%"), ("_", "\\_"), ("#", "\\#")):
        text = text.replace(char, escaped)
    return text.replace("±", "$\\pm$").replace("–", "--")


def final_returns(runs: pd.DataFrame, error: str = "ci") -> pd.DataFrame:
    """Tidy per (env, label): n, mean, std, 95 % Student-t CI of the final evaluation return over seeds."""
    if error not in ERROR_KINDS:
        raise ValueError(f"unknown table error {error!r}; valid choices: {', '.join(ERROR_KINDS)}")
    rows = []
    for (env, label, algo), group in runs.groupby(["env_id", "label", "algo"]):
        values = group["final_return"].to_numpy(dtype=float)
        mean, lower, upper = mean_ci(values)
        rows.append({"env_id": env, "label": label, "algo": algo, "n": len(values), "mean": mean,
                     "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                     "ci_low": lower, "ci_high": upper})
    return pd.DataFrame(rows, columns=["env_id", "label", "algo", "n", "mean", "std", "ci_low", "ci_high"])


def final_returns_table(summary: pd.DataFrame, error: str, published: PublishedTable | None = None) -> TextTable:
    """Rows = envs, columns = algorithms (+ published numbers for the same env family); best mean in bold."""
    labels = ordered(summary["label"].unique(), label_algos(summary))
    envs = sorted(summary["env_id"].unique())
    header = ["env", *labels] + (["published (source)"] if published else [])
    kind = "95% CI (Student t over seeds)" if error == "ci" else "std over seeds"
    table = TextTable(header, [], caption=f"final evaluation return, mean ± {kind}; [n] = seeds; best mean in bold")
    indexed = summary.set_index(["env_id", "label"])
    for r, env in enumerate(envs):
        row, means = [env], []
        for label in labels:
            if (env, label) not in indexed.index:
                row.append("–")
                means.append(-np.inf)
                continue
            cell = indexed.loc[(env, label)]
            spread = (cell["ci_high"] - cell["mean"]) if error == "ci" else cell["std"]
            row.append(f"{cell['mean']:.1f} ± {spread:.1f} [{int(cell['n'])}]" if np.isfinite(spread)
                       else f"{cell['mean']:.1f} [{int(cell['n'])}]")
            means.append(cell["mean"])
        if published:
            row.append(_published_cell(published, summary["algo"].unique(), env))
        best = int(np.argmax(means))
        if np.isfinite(means[best]) and sum(np.isfinite(means)) > 1:
            table.bold.add((r, 1 + best))
        table.rows.append(row)
    return table


def _published_cell(published: PublishedTable, algos: Sequence[str], env_id: str) -> str:
    """``sac: 6427 ± 804 (dacer_paper), 4616 ± 1354 (zoo); dacer: ...``: the sources' protocols are listed
    under the table (env version, budget, seeds, metric)."""
    parts = []
    for algo in ordered(algos):
        rows = published.matching(algo, env_id)
        if rows:
            parts.append(f"{algo}: " + ", ".join(f"{_short(row.mean)} ± {_short(row.error)} ({row.source})"
                                                 for row in rows))
    return "; ".join(parts) if parts else "–"


def _short(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"


def cost(runs: pd.DataFrame) -> pd.DataFrame:
    """Tidy per (env, label), done runs only: wall-clock hours, env steps/s, memory (median, min, max)."""
    done = runs[runs["complete"]].assign(hours=lambda frame: frame["wall_time_s"] / 3600)
    on_gpu = done["cuda_reserved_peak_mb"].notna().any()
    memory_column = "cuda_reserved_peak_mb" if on_gpu else "rss_peak_mb"
    rows = []
    for (env, label, algo), group in done.groupby(["env_id", "label", "algo"]):
        rows.append({
            "env_id": env, "label": label, "algo": algo, "n": len(group),
            "hours": group["hours"].median(), "hours_min": group["hours"].min(), "hours_max": group["hours"].max(),
            "sps": group["sps"].median(), "sps_min": group["sps"].min(), "sps_max": group["sps"].max(),
            "updates_per_s": group["updates_per_s"].median(),
            "rss_peak_mb": group["rss_peak_mb"].median(),
            "cuda_alloc_peak_mb": _median(group["cuda_alloc_peak_mb"]),
            "cuda_reserved_peak_mb": _median(group["cuda_reserved_peak_mb"]),
            "memory_mb": group[memory_column].median(), "memory_min": group[memory_column].min(),
            "memory_max": group[memory_column].max(),
            "memory_kind": "peak GPU memory reserved (MB)" if on_gpu else "peak RSS (MB)",
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    rank = {label: i for i, label in enumerate(ordered(frame["label"], label_algos(frame)))}
    return frame.sort_values(["env_id", "label"], key=lambda c: c.map(rank) if c.name == "label" else c,
                             ignore_index=True)


def cost_table(cost_frame: pd.DataFrame) -> TextTable:
    header = ["env", "algorithm", "runs", "hours: median [min–max]", "env steps/s", "updates/s", "peak RSS (MB)",
              "GPU alloc peak (MB)", "GPU reserved peak (MB)"]
    table = TextTable(header, [], caption="cost per run (done runs): medians over seeds")
    for row in cost_frame.itertuples():
        table.rows.append([row.env_id, row.label, str(row.n),
                           f"{row.hours:.2f} [{row.hours_min:.2f}–{row.hours_max:.2f}]", _number(row.sps, 1),
                           _number(row.updates_per_s, 1), _number(row.rss_peak_mb, 0),
                           _number(row.cuda_alloc_peak_mb, 0), _number(row.cuda_reserved_peak_mb, 0)])
    return table


def _median(values: pd.Series) -> float:
    """NaN (quietly) when no run has the figure, e.g. GPU memory of CPU runs."""
    return float(values.median()) if values.notna().any() else math.nan


def _number(value: float, digits: int) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"
