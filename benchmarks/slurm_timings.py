"""SLURM path timings on the local single-node cluster (docs/benchmarks.md, issue 6).

    scripts/slurm-local-cluster.sh start && export SLURM_CONF=/tmp/bench-slurm/slurm.conf
    PYTHONPATH=.:tests/plugins python benchmarks/slurm_timings.py [--out /tmp/slurm-timings]

1. array: `bench run --executor slurm` of 2 algorithms x 1 env x 2 seeds (the SLURM test's tiny runs): time for the
   command to return, and from submission until every run directory holds DONE.
2. requeue (USR2 by scancel, as the test does): signal -> checkpoint -> requeue -> resumed run DONE.
3. real time limit: timeout_min=1 with signal_delay_s=50, so slurmctld itself sends USR2 (it checks time limits
   every ~30 s); a slow run (SAC sleeping 10 ms per update) is checkpointed, requeued and resumed, as often as needed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--protocol", "quick", "--steps", "300", "--warmup", "100", "--eval-every", "100", "--eval-episodes", "2",
        "-o", "protocol.log_every=100", "-o", "batch_size=32", "-o", "hidden=32,32"]
CHEAP = ["--config", str(ROOT / "algorithms/configs/cpu-smoke.yaml"),
         "--config", str(ROOT / "algorithms/configs/small-nets.yaml")]


def bench(*args: str, results: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_RESULTS_DIR": str(results),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "plugins")])}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, env=env, check=True)


def profile(path: Path, **settings) -> Path:
    values = {"partition": "debug", "timeout_min": 10, "cpus_per_task": 1, "mem_gb": 1, **settings}
    path.write_text("".join(f"{key}: {value}\n" for key, value in values.items()))
    return path


def wait_done(runs: list[Path], timeout: float = 600) -> float:
    began = time.time()
    while not all((run / "DONE").exists() for run in runs):
        if time.time() - began > timeout:
            raise TimeoutError(runs)
        time.sleep(0.1)
    return time.time() - began


def checkpoint_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoint.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/slurm-timings"))
    out = parser.parse_args().out / time.strftime("%H%M%S")
    out.mkdir(parents=True)

    results = out / "array"
    began = time.time()
    bench("run", "--algos", "sac,sdac", "--envs", "Pendulum", "--seeds", "2", "--suite", "arr", *TINY, *CHEAP,
          "--executor", "slurm", "--profile", str(profile(out / "p.yaml")), results=results)
    returned = time.time() - began
    runs = [results / "arr" / algo / "Pendulum-v1" / f"seed={seed}" for algo in ("sac", "sdac") for seed in (0, 1)]
    all_done = returned + wait_done(runs)
    print(f"array 2x1x2: `bench run --executor slurm` returned after {returned:.1f} s; all 4 DONE "
          f"{all_done:.1f} s after submission")

    results = out / "requeue"
    run = results / "rq" / "sac" / "Pendulum-v1" / "seed=0"
    bench("run", "--algos", "sac", "--envs", "Pendulum", "--suite", "rq", "--protocol", "quick", "--steps", "1500",
          "--warmup", "100", "--eval-every", "300", "--eval-episodes", "2", "--checkpoint-every", "100",
          "-o", "batch_size=32", "-o", "hidden=32,32", "--executor", "slurm",
          "--profile", str(profile(out / "short.yaml", timeout_min=2, signal_delay_s=30)), results=results)
    while checkpoint_step(run) < 300:
        time.sleep(0.1)
    task = next(iter(json.loads((results / "rq/slurm/submissions.jsonl").read_text().splitlines()[0])["tasks"]))
    subprocess.run(["scancel", "--signal=USR2", task], check=True)
    print(f"requeue (USR2 via scancel at step {checkpoint_step(run)}): signal -> DONE {wait_done([run]):.1f} s")

    results = out / "timelimit"
    run = results / "tl" / "slow_sac" / "Pendulum-v1" / "seed=0"
    began = time.time()
    bench("run", "--algos", "slow_sac", "--plugin", "slow_agent", "--envs", "Pendulum", "--suite", "tl",
          "--protocol", "quick", "--steps", "4000", "--warmup", "100", "--eval-every", "1000", "--eval-episodes", "2",
          "--checkpoint-every", "200", "-o", "batch_size=32", "-o", "hidden=32,32", "--executor", "slurm",
          "--profile", str(profile(out / "tl.yaml", timeout_min=1, signal_delay_s=50)), results=results)
    wait_done([run], timeout=900)
    attempts = json.loads((run / "attempts.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    spans = [f"{a['start_step']}->{a['end_step']} ({a['outcome']}, {a['last_alive'] - a['started']:.0f} s)"
             for a in attempts]
    gaps = [later["started"] - earlier["last_alive"] for earlier, later in zip(attempts, attempts[1:])]
    print(f"real time limit (1 min, USR2 50 s before): {len(attempts)} attempts {spans}; "
          f"checkpoint -> resumed gaps {[f'{g:.1f}' for g in gaps]} s; total_steps {summary['total_steps']}, "
          f"resumes {summary['resumes']}; submit -> DONE {time.time() - began:.0f} s")


if __name__ == "__main__":
    main()
