"""Plot one column of several runs' train.csv against env steps (or gradient updates), one line per run.

    python benchmarks/train_metric_plot.py results/dacer-alpha-before/dacer/Hopper-v4/seed=0 \\
        results/dacer-alpha-after/dacer/Hopper-v4/seed=0 --metric alpha --labels "released interval,150 steps" \\
        --x updates --log-y --out docs/figures/dacer-alpha-sdac-paper.png

For a quantity the report does not aggregate (DACER's temperature, an entropy estimate, a loss); the CSV is the
run's own record, so the plot shows exactly what the agent logged at each `log_every` row.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def metric_series(run_dir: Path, metric: str, x_column: str) -> tuple[list[float], list[float]]:
    """(x, value) of every train.csv row where ``metric`` was logged."""
    with open(run_dir / "train.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get(metric)]
    if not rows:
        raise SystemExit(f"{run_dir / 'train.csv'}: no values of {metric!r}")
    return [float(row[x_column]) for row in rows], [float(row[metric]) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--metric", required=True, help="a train.csv column, e.g. alpha")
    parser.add_argument("--labels", help="comma-separated, one per run (default: the run folders)")
    parser.add_argument("--x", choices=("step", "updates"), default="step")
    parser.add_argument("--log-y", action="store_true")
    parser.add_argument("--title", default="")
    parser.add_argument("--legend", default="best", help="matplotlib legend location, e.g. 'lower left'")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    labels = args.labels.split(",") if args.labels else [str(path) for path in args.run_dirs]
    if len(labels) != len(args.run_dirs):
        raise SystemExit(f"--labels has {len(labels)} names for {len(args.run_dirs)} runs")
    fig, ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
    for run_dir, label in zip(args.run_dirs, labels):
        x, y = metric_series(run_dir, args.metric, args.x)
        ax.plot(x, y, label=label, linewidth=1.6, drawstyle="steps-post")
    ax.set(xlabel="gradient updates" if args.x == "updates" else "env steps", ylabel=args.metric)
    ax.set_title(args.title, fontsize=9)
    if args.log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, loc=args.legend, fontsize=8)
    fig.savefig(args.out, dpi=150)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
