"""Cost of the metric sinks (--log tensorboard,wandb): opening each, one 18-metric train row (SAC's columns), closing,
and reopening W&B offline after an attempt (it reads the earlier .wandb file to find the last step it holds).

    WANDB_MODE=offline python benchmarks/sink_costs.py [--rows 1000] [--dir /tmp/sink-costs]

Uses bench.records.sinks.open_sinks on a planned SAC/Pendulum run, as the trainer does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from bench.plan.expand import Execution
from bench.plan.spec import SweepSpec
from bench.records.sinks import open_sinks

ROW = {"wall_time_s": 1.0, "train/episode_return": -1000.0, "train/episode_length": 200, "train/episodes": 3,
       "updates": 100, "time/sps": 100.0, "time/env_s": 1.0, "time/act_s": 1.0, "time/update_s": 1.0,
       "time/eval_s": 1.0, "mem/rss_peak_mb": 300.0, "loss/critic": 1.0, "loss/actor": 1.0, "loss/alpha": 1.0,
       "alpha": 0.2, "entropy": 1.0, "q_mean": 1.0}


def timed(action) -> tuple[float, object]:
    began = time.perf_counter()
    result = action()
    return time.perf_counter() - began, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/sink-costs"))
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    shutil.rmtree(args.dir, ignore_errors=True)
    spec = SweepSpec(name="costs", algos=["sac"], envs=["Pendulum"], seeds=[0], preset="none")
    job = spec.expand(args.dir, execution=Execution())[0]
    job.directory.path.mkdir(parents=True)
    for name in ("tensorboard", "wandb", "wandb"):  # the second wandb: a resume, reading the first one's file
        opened, sinks = timed(lambda: open_sinks((name,), job.directory, job, print))
        logged, _ = timed(lambda: [sinks.log("train", {**ROW, "step": 1000 * (i + 1)}) for i in range(args.rows)])
        closed, _ = timed(sinks.close)
        print(f"{name:12s} open {opened:5.2f} s   {1e3 * logged / args.rows:6.3f} ms per row   close {closed:5.2f} s")


if __name__ == "__main__":
    main()
