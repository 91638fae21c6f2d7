"""Paper-style figures for `bench report`: every function takes plain arrays/dicts and returns a Figure.

One colour per algorithm across every figure (and across reports): the known algorithms have fixed slots
in the colour-blind palette, anything else takes the next free slot in name order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from rliable import plot_utils

from bench.report.stats import KNOWN_ORDER, ordered

STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "axes.spines.top": False,
         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3}


def palette(labels: Sequence[str], algo_of: Mapping[str, str] | None = None) -> dict[str, tuple]:
    """label -> colour, in display order (every figure draws its labels in this order). A known algorithm (or the
    first, by name, of its variants; ``algo_of`` maps a variant's label to its algorithm) has its fixed slot among
    the ten colour-blind-safe colours; other labels take the unused known slots, then a darker second set, in name
    order, so no two labels share a colour below twenty."""
    colours = sns.color_palette("colorblind", 10) + sns.color_palette("dark", 10)
    algo_of = algo_of or {}
    slots: dict[str, int] = {}
    for label in sorted(labels):
        base = algo_of.get(label, label)
        if base in KNOWN_ORDER and KNOWN_ORDER.index(base) not in slots.values():
            slots[label] = KNOWN_ORDER.index(base)
    spare = [i for i in range(10) if i not in slots.values()] + list(range(10, len(colours)))
    for number, label in enumerate(sorted(set(labels) - set(slots))):
        slots[label] = spare[number % len(spare)]
    return {label: colours[slots[label]] for label in ordered(labels, algo_of)}


def in_order(labels, colors: Mapping[str, tuple]) -> list[str]:
    """``labels`` in the display order that :func:`palette` gave ``colors``."""
    present = set(labels)
    return [label for label in colors if label in present]


def save(fig: plt.Figure, folder: Path, name: str) -> list[Path]:
    """``name``.png (for report.md and a quick look) and ``name``.pdf (vector, for the paper)."""
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")  # outside any rc_context: pass it explicitly
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def aggregates(points: dict, cis: dict, metric_names: Sequence[str], colors: dict, xlabel: str) -> plt.Figure:
    with plt.rc_context(STYLE | {"axes.grid": False}):
        labels = in_order(points, colors)[::-1]  # rliable draws the first label at the bottom
        row_height = 0.45
        # The label's y is a fraction of the figure height (row_height x labels): keep it ~0.5 inch below the axes,
        # under the tick labels, however many algorithms there are.
        label_y = -0.5 / (row_height * len(labels))
        fig, _ = plot_utils.plot_interval_estimates(points, cis, metric_names=list(metric_names), algorithms=labels,
                                                    colors=colors, xlabel=xlabel, xlabel_y_coordinate=label_y,
                                                    subfigure_width=3.0, row_height=row_height, max_ticks=3)
    return fig


def improvement(probabilities: dict, cis: dict, colors: dict) -> plt.Figure:
    with plt.rc_context(STYLE | {"axes.grid": False}):
        height = max(2.0, 0.35 * len(probabilities) + 0.8)
        fig, ax = plt.subplots(figsize=(4.5, height))
        pair_colors = [colors[pair.split(",")[0]] for pair in probabilities]  # rliable indexes by position
        plot_utils.plot_probability_of_improvement(probabilities, cis, ax=ax, colors=pair_colors,
                                                   xlabel="P(X > Y)", left_ylabel="Algorithm X",
                                                   right_ylabel="Algorithm Y", ticklabelsize="small",
                                                   labelsize="medium")
        ax.set_xlim(0, 1)  # probabilities: the same scale in every report
    return fig


def profiles(profile: dict, cis: dict, taus: np.ndarray, colors: dict, xlabel: str) -> plt.Figure:
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        plot_utils.plot_performance_profiles(profile, taus, performance_profile_cis=cis, colors=colors, ax=ax,
                                             xlabel=xlabel, ylabel="Fraction of runs with score > τ",
                                             labelsize="medium", ticklabelsize="small")
        ax.legend(handles=_handles(in_order(profile, colors), colors), loc="upper right", frameon=False)
    return fig


def curves(grids: dict, points: dict, cis: dict, colors: dict, xlabel: str, ylabel: str,
           x_scale: float = 1.0) -> plt.Figure:
    """One line + CI band per label; each label may have its own x grid (wall-clock curves)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        _draw_bands(ax, grids, points, cis, colors, x_scale)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.legend(frameon=False)
    return fig


def env_panels(env_curves: dict, colors: dict, x_scale: float = 1e-3, xlabel: str = "env steps (thousands)") -> plt.Figure:
    """Learning curves, one panel per env: mean return over seeds and its 95 % CI band, every algorithm."""
    envs = sorted(env_curves)
    columns = min(3, len(envs))
    rows = int(np.ceil(len(envs) / columns))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.7 * rows), squeeze=False,
                                 layout="constrained")
        for ax, env in zip(axes.flat, envs):
            per_label = env_curves[env]
            grids = {label: values[0] for label, values in per_label.items()}
            means = {label: values[1] for label, values in per_label.items()}
            bands = {label: np.stack([values[2], values[3]]) for label, values in per_label.items()}
            _draw_bands(ax, grids, means, bands, colors, x_scale)
            ax.set(title=env, xlabel=xlabel, ylabel="return")
        for ax in list(axes.flat)[len(envs):]:
            ax.set_visible(False)
        _legend_below(fig, in_order({label for per_label in env_curves.values() for label in per_label}, colors),
                      colors, columns=3 * columns)
    return fig


def cost_bars(cost, colors: dict) -> plt.Figure:
    """Wall-clock hours, env steps/s and peak memory per algorithm and env (medians; whiskers = min..max)."""
    panels = [("hours", "hours_min", "hours_max", "wall-clock per run (h)"),
              ("sps", "sps_min", "sps_max", "env steps / s"),
              ("memory_mb", "memory_min", "memory_max", None)]
    envs = sorted(cost["env_id"].unique())
    labels = in_order(cost["label"].unique(), colors)
    width = 0.8 / len(labels)
    memory_label = cost["memory_kind"].iloc[0] if len(cost) else "memory (MB)"
    with plt.rc_context(STYLE | {"axes.grid": False}):
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.0), layout="constrained")
        for ax, (column, low, high, title) in zip(axes, panels):
            for i, label in enumerate(labels):
                mine = cost[cost["label"] == label].set_index("env_id").reindex(envs)
                x = np.arange(len(envs)) + (i - (len(labels) - 1) / 2) * width
                errors = np.stack([mine[column] - mine[low], mine[high] - mine[column]])
                ax.bar(x, mine[column], width, yerr=np.nan_to_num(errors), color=colors[label], label=label,
                       capsize=2, error_kw={"elinewidth": 0.8})
            ax.set_xticks(np.arange(len(envs)), envs, rotation=20, ha="right")
            ax.set_title(title or memory_label)
            ax.grid(axis="y", alpha=0.3)
        _legend_below(fig, labels, colors, columns=6)
    return fig


def _draw_bands(ax, grids: dict, points: dict, cis: dict, colors: dict, x_scale: float) -> None:
    for label in in_order(points, colors):
        x = np.asarray(grids[label]) * x_scale
        ax.plot(x, points[label], color=colors[label], label=label, linewidth=1.6)
        lower, upper = cis[label]
        ax.fill_between(x, lower, upper, color=colors[label], alpha=0.2, linewidth=0)


def _legend_below(fig: plt.Figure, labels: Sequence[str], colors: dict, columns: int) -> None:
    """One legend under every panel, in the constrained layout's reserved space (so it never covers an axis
    label however many rows it takes), read left to right in display order."""
    ncol = max(1, min(columns, len(labels)))
    rows = -(-len(labels) // ncol)
    # matplotlib fills a multi-column legend column by column: transpose so the rows read in display order.
    by_row = [labels[row * ncol + col] for col in range(ncol) for row in range(rows) if row * ncol + col < len(labels)]
    fig.legend(handles=_handles(by_row, colors), loc="outside lower center", ncol=ncol, frameon=False)


def _handles(labels: Sequence[str], colors: dict) -> list:
    return [matplotlib.lines.Line2D([], [], color=colors[label], linewidth=2, label=label) for label in labels]
