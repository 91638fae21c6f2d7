"""Wall time per gradient update and per act() call of every agent, eager and compiled (``Agent.compile()``), on
random batches (no env needed).

    python benchmarks/update_speed.py                                  # paper settings, ~12 minutes
    python benchmarks/update_speed.py --config algorithms/configs/cpu-smoke.yaml --algos sdac,dpmd
    python benchmarks/update_speed.py --algos dacer,dacer2,sac         # DACER (T = 20) vs DACER2 (T = 5) vs SAC
    python benchmarks/update_speed.py --algos cpql,sac --envs Hopper-v5 --threads 1
    python benchmarks/update_speed.py --algos cpql --envs Hopper-v5 --threads 1 -o cpql.sampling_steps=3
    python benchmarks/update_speed.py --algos sdac,dpmd,dacer --envs Hopper-v5 --modes eager,compiled
    python benchmarks/update_speed.py --released      # the released code's figures (issue 20), recorded, and exit

Settings are each algorithm's defaults for the env (paper settings: batch 256; SDAC/DPMD 20 diffusion steps,
best-of-32, K = 64; CPQL one-step sampling, 50 candidates per state when acting), or those plus the per-algorithm blocks of a ``--config`` file (the shape of
``algorithms/configs/cpu-smoke.yaml``). Env dims: Hopper-v5 (obs 11, act 3) and Humanoid-v5 (obs 348, act 17).
Acting is timed for 5 envs (stochastic, as in data collection under the SDAC protocol) and for 20 (deterministic,
one evaluation round of 20 episodes), and for 1 (deterministic: the latency of a single action). SDAC/DPMD/DACER
update the policy every 2nd update, so an even number of updates is timed after an even number of warm-up updates:
the figure is the mean over policy and critic-only updates. DACER's GMM entropy estimate (every 10,000 updates,
first at update 0, i.e. in the warm-up) is not in the per-update figure; its cost is timed once on its own.
"CPU ms/update" is the process's CPU time (all its threads): on a machine shared with other jobs it stays close to
the uncontended wall time at 1 thread, while the wall figures grow with the load.
With ``--modes eager,compiled`` each agent is timed eagerly and then compiled (a fresh agent, ``Agent.compile()``):
compilation happens in the warm-up calls and is reported on its own ("compile s", wall), never in the per-update
figures; the compiled row's "vs eager" is eager CPU ms / compiled CPU ms (> 1: compiled is faster).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import algorithms
from algorithms import make_agent
from algorithms.compiled import compile_seconds
from algorithms.config import read_yaml
from algorithms.testing import random_batch

ENV_DIMS = {"Hopper-v5": (11, 3), "Humanoid-v5": (348, 17)}

# The released JAX code's update at paper settings, Hopper-v5 dims, batch 256, one pinned core, jitted update timed
# after compilation, interleaved with ours (issue 20, "Why"; measured by the session that filed it, not here: this
# machine has no JAX). ms per update of ours (eager, then) / released; matmul GFLOP per update ours / released.
RELEASED_FIGURES = [
    ("SDAC", 1076, 1319, "76.9 / 123.5", "71 / 94"),
    ("DPMD", 680, 496, "51.2 / 51.1", "75 / 103"),
    ("DACER", 62.7, 144.6, "4.1 / 6.6", "65 / 46"),
]


def time_calls(call, min_calls: int, min_seconds: float, multiple_of: int = 1, cpu: bool = False):
    """Mean seconds per call over at least ``min_calls`` calls and ``min_seconds`` (count a multiple of ``multiple_of``);
    with ``cpu``, also the mean CPU seconds of this process per call (all its threads)."""
    calls, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while calls < min_calls or calls % multiple_of or time.perf_counter() - start < min_seconds:
        call()
        calls += 1
    wall = (time.perf_counter() - start) / calls
    return (wall, (time.process_time() - cpu_start) / calls) if cpu else wall


def measure(name: str, env_id: str, overrides: dict, args: argparse.Namespace, mode: str) -> dict[str, float]:
    obs_dim, act_dim = ENV_DIMS[env_id]
    agent = make_agent(name, obs_dim, act_dim, overrides, seed=0, env_id=env_id)
    if mode == "compiled":
        agent.compile()
    compiled_before = compile_seconds()
    generator = torch.Generator().manual_seed(0)
    batches = [random_batch(obs_dim, act_dim, agent.config.batch_size, terminal_fraction=0.01, generator=generator)
               for _ in range(4)]
    counter = iter(range(10**9))

    def update() -> None:
        metrics = agent.update(batches[next(counter) % len(batches)])
        float(metrics["loss/critic"])  # a real loop reads metrics now and then; keeps the timing honest on GPU

    rng = np.random.default_rng(0)
    obs_train = rng.normal(size=(5, obs_dim)).astype(np.float32)
    obs_eval = rng.normal(size=(20, obs_dim)).astype(np.float32)
    for _ in range(args.warmup):  # compiles every graph the timed calls use, acting included
        update()
    for obs, deterministic in ((obs_train, False), (obs_eval, True), (obs_eval[:1], True)):
        agent.act(obs, deterministic=deterministic)
    compile_s = compile_seconds() - compiled_before
    seconds_per_update, cpu_per_update = time_calls(update, args.min_updates, args.min_seconds, multiple_of=2, cpu=True)
    act_train = time_calls(lambda: agent.act(obs_train), 5, args.min_seconds / 4)
    act_eval = time_calls(lambda: agent.act(obs_eval, deterministic=True), 5, args.min_seconds / 4)
    act_one = time_calls(lambda: agent.act(obs_eval[:1], deterministic=True), 5, args.min_seconds / 4)
    entropy_s = float("nan")
    if hasattr(agent, "estimate_entropy"):  # DACER's periodic host-side GMM fit, on one batch of states
        start = time.perf_counter()
        agent.estimate_entropy(batches[0].obs, 1.0)
        entropy_s = time.perf_counter() - start
    return {"updates_per_s": 1.0 / seconds_per_update, "ms_update": 1e3 * seconds_per_update,
            "cpu_ms_update": 1e3 * cpu_per_update,
            "ms_act5": 1e3 * act_train, "ms_act20": 1e3 * act_eval, "ms_act1": 1e3 * act_one,
            "entropy_s": entropy_s, "compile_s": compile_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", default=",".join(algorithms.available_algorithms()))
    parser.add_argument("--modes", default="eager", help="eager, compiled or eager,compiled")
    parser.add_argument("--released", action="store_true", help="print the released code's recorded figures and exit")
    parser.add_argument("--envs", default=",".join(ENV_DIMS))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--config", type=Path, help="YAML with a block of field: value per algorithm")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="ALGO.KEY=VALUE",
                        help="one config field of one algorithm, after --config (shown in the algo column)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-updates", type=int, default=10)
    parser.add_argument("--min-seconds", type=float, default=15.0)
    args = parser.parse_args()
    if args.released:
        return print_released()
    blocks = read_yaml(args.config) if args.config else {}
    extra: dict[str, dict[str, str]] = {}
    for text in args.override:
        key, _, value = text.partition("=")
        algo, _, field = key.partition(".")
        extra.setdefault(algo, {})[field] = value
    setting = f"`{args.config}`" if args.config else "paper settings (algorithm defaults)"
    print(f"Settings: {setting}; torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}\n")
    print("| algo | env | threads | mode | updates/s | ms/update | CPU ms/update | vs eager | ms/act (5 envs) "
          "| ms/act (20, eval) | ms/act (1, eval) | s/entropy estimate | compile s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for env_id in args.envs.split(","):
            for name in args.algos.split(","):
                overrides = {**(blocks.get(name) or {}), **extra.get(name, {})}
                algorithms.resolve_config(name, env_id, overrides)  # fail early on a bad key
                label = " ".join([name, *(f"{k}={v}" for k, v in extra.get(name, {}).items())])
                eager_cpu = None
                for mode in args.modes.split(","):
                    r = measure(name, env_id, overrides, args, mode)
                    eager_cpu = r["cpu_ms_update"] if mode == "eager" else eager_cpu
                    ratio = f"{eager_cpu / r['cpu_ms_update']:.2f}x" if eager_cpu and mode != "eager" else "-"
                    entropy = "-" if np.isnan(r["entropy_s"]) else f"{r['entropy_s']:.1f}"
                    compile_s = f"{r['compile_s']:.0f}" if mode != "eager" else "-"
                    print(f"| {label} | {env_id} | {threads} | {mode} | {r['updates_per_s']:.2f} | "
                          f"{r['ms_update']:.1f} | {r['cpu_ms_update']:.1f} | {ratio} | {r['ms_act5']:.2f} | "
                          f"{r['ms_act20']:.2f} | {r['ms_act1']:.2f} | {entropy} | {compile_s} |", flush=True)


def print_released() -> None:
    print("Recorded (issue 20): paper settings, Hopper-v5 dims, batch 256, one pinned core; the released JAX code's "
          "jitted update timed after compilation, interleaved with ours (eager).\n")
    print("| agent | ours ms/update | released ms/update | ratio (>1: ours faster) | matmul GFLOP per update, "
          "ours / released | achieved GFLOP/s, ours / released |")
    print("|---|---|---|---|---|---|")
    for agent, ours, released, gflop, rate in RELEASED_FIGURES:
        print(f"| {agent} | {ours} | {released} | {released / ours:.2f} | {gflop} | {rate} |")


if __name__ == "__main__":
    main()
