"""Synthetic run directories in the real record format, with returns you choose.

For tests with known answers and for timing `bench report` on a paper-sized grid without training:

    python -m bench.report.synthetic /tmp/results/synthetic --algos 6 --envs 5 --seeds 10 --points 20
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from algorithms import config as cfg
from bench.jobs import Outcome, RunDir
from bench.plan.protocols import load_protocol
from bench.records.csvlog import EVAL_LOG_COLUMNS, CsvLog


def write_run(results: Path, suite: str, algo: str, env_id: str, seed: int, steps: Sequence[int],
              returns: Sequence[float], done: bool = True, seconds_per_step: float = 0.01,
              rss_mb: float = 500.0, planned_steps: int | None = None, protocol: str | None = None,
              preset: str | None = None) -> Path:
    """One run directory whose eval.csv holds ``returns`` at ``steps``; ``done=False`` leaves it interrupted. With
    ``protocol`` (a protocol name) its config records that protocol (its budget set to ``planned_steps`` or the last
    step) and ``preset``."""
    run = RunDir.at(results, suite, algo, env_id, seed)
    run.path.mkdir(parents=True, exist_ok=True)
    total = planned_steps or int(steps[-1])
    protocol_fields = ({**cfg.to_dict(load_protocol(protocol)), "total_steps": total} if protocol
                       else {"total_steps": total})
    run.write_config({
        "suite": suite, "algo": algo, "env_id": env_id, "seed": seed, "preset": preset,
        "protocol_name": protocol or "synthetic", "protocol": protocol_fields, "agent": {},
        "execution": {"device": "cpu", "torch_threads": 1}})
    evals = CsvLog(run.eval_log, EVAL_LOG_COLUMNS)
    for step, value in zip(steps, returns):
        evals.append({"step": int(step), "wall_time_s": step * seconds_per_step, "eval/return_mean": float(value),
                      "eval/return_std": 0.0, "eval/return_min": float(value), "eval/return_max": float(value),
                      "eval/length_mean": 1000.0, "eval/episodes": 10})
    evals.close()
    if done:
        wall = steps[-1] * seconds_per_step
        run.write_summary({
            "suite": suite, "algo": algo, "env_id": env_id, "seed": seed, "status": Outcome.DONE,
            "total_steps": int(steps[-1]), "final_eval_return": float(returns[-1]), "final_eval_step": int(steps[-1]),
            "best_eval_return": float(max(returns)), "wall_time_s": wall, "resumes": 0, "time/train_s": wall,
            "time/sps": 1.0 / seconds_per_step, "time/updates_per_s": 1.0 / seconds_per_step,
            "mem/rss_peak_mb": rss_mb, "mem/cuda_alloc_peak_mb": None, "mem/cuda_reserved_peak_mb": None})
        run.mark_done()
    return run.path


Curve = Callable[[int, int, int, np.ndarray], np.ndarray]


def learning_curve(algo_index: int, env_index: int, seed: int, fraction: np.ndarray) -> np.ndarray:
    """A saturating curve whose level grows with the algorithm index, plus seed noise."""
    rng = np.random.default_rng([algo_index, env_index, seed])
    level = 1000.0 * (env_index + 1) * (0.5 + 0.1 * algo_index)
    return level * (1 - np.exp(-4 * fraction)) + rng.normal(0, 0.05 * level, fraction.shape)


def write_grid(results: Path, suite: str, algos: int, envs: int, seeds: int, points: int,
               total_steps: int = 1_000_000, curve: Curve = learning_curve) -> list[Path]:
    """algos x envs x seeds done runs, each with ``points`` evaluations (step 0 included)."""
    steps = np.linspace(0, total_steps, points).astype(int)
    env_ids = ["Ant-v5", "HalfCheetah-v5", "Hopper-v5", "Humanoid-v5", "Walker2d-v5", "Swimmer-v5",
               "Pendulum-v1", "InvertedPendulum-v5"]
    if envs > len(env_ids):
        raise ValueError(f"at most {len(env_ids)} synthetic envs, got {envs}")
    algo_names = ["sac", "sdac", "dpmd", "dacer", "dacer2", "cpql", "algo7", "algo8", "algo9", "algo10"][:algos]
    return [write_run(results, suite, algo, env_ids[e], seed, steps, curve(a, e, seed, steps / total_steps),
                      seconds_per_step=0.002 * (a + 1))
            for a, algo in enumerate(algo_names) for e in range(envs) for seed in range(seeds)]


def main() -> None:
    parser = argparse.ArgumentParser(description="write synthetic run directories")
    parser.add_argument("suite_dir", type=Path, help="results/<suite> folder to create")
    parser.add_argument("--algos", type=int, default=6)
    parser.add_argument("--envs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--points", type=int, default=20)
    args = parser.parse_args()
    written = write_grid(args.suite_dir.parent, args.suite_dir.name, args.algos, args.envs, args.seeds, args.points)
    print(f"wrote {len(written)} runs under {args.suite_dir}")


if __name__ == "__main__":
    main()
