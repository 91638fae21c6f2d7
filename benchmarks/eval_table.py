"""Print each run's evaluation return at chosen env steps, read from the run directories.

    python benchmarks/eval_table.py results/bench-sac-pendulum --steps 5000,10000,20000 --threshold -250

With --threshold it also reports, per run, the first step whose mean eval return reaches the threshold.
(`bench report` gives the aggregate statistics; this is the plain per-seed view the benchmarks doc quotes.)
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def eval_rows(run_dir: Path) -> list[tuple[int, float]]:
    with open(run_dir / "eval.csv") as handle:
        return [(int(row["step"]), float(row["eval/return_mean"])) for row in csv.DictReader(handle)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("suite_dir", type=Path)
    parser.add_argument("--steps", default="", help="comma-separated env steps to show")
    parser.add_argument("--threshold", type=float)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",") if s]
    header = ["run", *[f"@{s}" for s in steps], "final", "best", "wall s", "sps"]
    if args.threshold is not None:
        header.append(f"first step >= {args.threshold:g}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for run_dir in sorted(p.parent for p in args.suite_dir.glob("*/*/seed=*/eval.csv")):
        rows = dict(eval_rows(run_dir))
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        cells = [str(run_dir.relative_to(args.suite_dir))]
        cells += [f"{rows[s]:.1f}" if s in rows else "-" for s in steps]
        cells += [f"{summary.get('final_eval_return', float('nan')):.1f}",
                  f"{summary.get('best_eval_return', float('nan')):.1f}",
                  f"{summary.get('wall_time_s', float('nan')):.0f}", f"{summary.get('time/sps', float('nan')):.0f}"]
        if args.threshold is not None:
            hits = [step for step, value in sorted(rows.items()) if value >= args.threshold]
            cells.append(str(hits[0]) if hits else "never")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
