"""Does a second torch thread help or hurt when another CPU-bound process shares the cores?

    python benchmarks/threads_contention.py                            # DPMD, cpu-smoke settings, Hopper dims
    python benchmarks/threads_contention.py --algo sdac --config none  # paper settings (slow)
    python benchmarks/threads_contention.py --competitors 0            # a quiet machine, for comparison

Each setting runs in its own process (OpenMP reads its environment when torch is imported): 1 thread; 2 threads with
OpenMP's default wait policy (idle threads spin for a while before sleeping); 2 threads with OMP_WAIT_POLICY=PASSIVE
(idle threads sleep at once, so a thread waiting at a barrier does not take the core from the thread it waits
for, nor from the competing process). ``--competitors`` busy-loop processes run for the whole measurement, as on a
shared cluster node. The settings are interleaved over ``--rounds`` rounds and the median wall ms per update is
reported with the process's CPU ms per update. The threads default of ``bench run`` follows from this measurement
(docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "1 thread": (1, {}),
    "2 threads, default wait policy": (2, {}),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
}


def worker(args: argparse.Namespace) -> None:
    """One setting: time ``--updates`` updates after warm-up; print one JSON line."""
    import torch

    from algorithms import make_agent
    from algorithms.config import read_yaml
    from algorithms.testing import random_batch

    torch.set_num_threads(args.threads)
    overrides = read_yaml(Path(args.config)).get(args.algo) or {} if args.config != "none" else {}
    agent = make_agent(args.algo, 11, 3, overrides, seed=0, env_id="Hopper-v5")
    generator = torch.Generator().manual_seed(0)
    batches = [random_batch(11, 3, agent.config.batch_size, generator=generator) for _ in range(4)]
    for i in range(2):
        agent.update(batches[i])
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(args.updates):
        float(agent.update(batches[i % 4])["loss/critic"])
    print(json.dumps({"wall_ms": 1e3 * (time.perf_counter() - wall) / args.updates,
                      "cpu_ms": 1e3 * (time.process_time() - cpu) / args.updates}))


def run_setting(threads: int, env: dict[str, str], args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", "--threads", str(threads), "--algo", args.algo,
               "--config", args.config, "--updates", str(args.updates)]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    if "OMP_WAIT_POLICY" not in env:
        full_env.pop("OMP_WAIT_POLICY", None)
    out = subprocess.run(command, capture_output=True, text=True, env=full_env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def busy_loop() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="dpmd")
    parser.add_argument("--config", default=str(ROOT / "algorithms/configs/cpu-smoke.yaml"),
                        help="YAML with a block per algorithm, or none (paper settings)")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--competitors", type=int, default=1, help="busy-loop processes beside the measurement")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    competitors = [busy_loop() for _ in range(args.competitors)]
    try:
        results: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
        for _ in range(args.rounds):
            for name, (threads, env) in SETTINGS.items():
                results[name].append(run_setting(threads, env, args))
    finally:
        for process in competitors:
            process.kill()
            process.wait()
    print(f"{args.algo}, config {args.config}, Hopper dims, {args.competitors} busy-loop process(es) beside it, "
          f"{os.cpu_count()} cores, median of {args.rounds} interleaved rounds of {args.updates} updates\n")
    print("| setting | wall ms/update | CPU ms/update | wall vs 1 thread |")
    print("|---|---|---|---|")
    one = statistics.median(r["wall_ms"] for r in results["1 thread"])
    for name, rows in results.items():
        wall = statistics.median(r["wall_ms"] for r in rows)
        cpu = statistics.median(r["cpu_ms"] for r in rows)
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {wall / one:.2f}x |")


if __name__ == "__main__":
    main()
