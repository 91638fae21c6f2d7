"""The GPU check of issue 20: one command, under 8 minutes on one GPU (benchmarks/gpu_check.sh runs it).

    benchmarks/gpu_check.sh                       # CUDA, paper settings: the figures for docs/benchmarks.md
    benchmarks/gpu_check.sh --device cpu --quick  # seconds on a CPU: checks that the script still runs (a test does)

Prints two tables:

1. Per agent (sac, td3, sdac, dpmd, dacer, dacer2, cpql, qsm, dipo, qvpo) at its paper settings for Hopper-v5
   (obs 11, act 3; batch 256), on random batches: ms per update eager, compiled (``Agent.compile()``) and compiled
   with CUDA graphs (``Agent.compile("reduce-overhead")``), the seconds spent compiling (apart from the speed
   figures), act latency (1 state, deterministic; 5 states, stochastic as in SDAC's data collection) and the peak
   CUDA memory allocated / reserved by the eager agent. Each agent is measured in its own process with a time limit
   (its share of ``--budget-s``: a compile that takes too long shows as "timeout", the rest of the table still
   comes); where this checkout has no ``Agent.compile`` the compiled columns read "n/a" and a notice says why.
2. Total env steps/s of 1, 2, 4, 8 SDAC runs (sdac-paper preset, Hopper) packed on one device the way a SLURM array
   task with ``runs_per_task: K`` packs them (``bench.launch.local_pool.run_local``: one process per run): each
   run's rate after its warm-up, over the window where all K are past warm-up, summed.

``--quick``: the cheap configs (algorithms/configs/cpu-smoke.yaml + small-nets.yaml), a few updates, agents in this
process, no compiled columns (``--compile-agents sac`` adds SAC's: a minute or two of compiling for the CPU),
1 and 2 packed runs. Its figures mean nothing; it exists so that the
script cannot rot unnoticed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the checkout this script belongs to, ahead of any installed copy
    sys.path.insert(0, str(ROOT))

AGENTS = ("sac", "td3", "sdac", "dpmd", "dacer", "dacer2", "cpql", "qsm", "dipo", "qvpo")
COST_ORDER = ("sac", "td3", "cpql", "dacer2", "qsm", "dipo", "qvpo", "dacer", "dpmd", "sdac")  # CPU ms/update, rising
ENV_ID, OBS_DIM, ACT_DIM = "Hopper-v5", 11, 3
MODES = (("eager", None), ("compiled", "default"), ("compiled + CUDA graphs", "reduce-overhead"))
QUICK_CONFIGS = (ROOT / "algorithms" / "configs" / "cpu-smoke.yaml", ROOT / "algorithms" / "configs" / "small-nets.yaml")
ACT_ENVS = 5  # SDAC's protocol collects data from 5 envs
AGENT_COLUMNS = ("agent", *(f"ms/update {label}" for label, _ in MODES), "compile s (compiled / graphs)",
                 "ms/act 1 state", f"ms/act {ACT_ENVS} states", "peak alloc MB", "peak reserved MB")
PACK_COLUMNS = ("SDAC runs on one device", "total env steps/s", "per run", "vs 1 run")


class Settings(argparse.Namespace):
    device: str
    quick: bool
    agents: str
    compile_agents: str | None
    packs: str | None
    budget_s: float
    pack_seconds: float | None
    measure_agent: str | None


def parse(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="cheap configs and few updates: a smoke test")
    parser.add_argument("--agents", default=",".join(AGENTS), help="comma-separated (default: all ten)")
    parser.add_argument("--compile-agents", help="agents whose compiled columns are measured (default: all; "
                                                 "--quick: none, since compiling for the CPU takes minutes)")
    parser.add_argument("--packs", help="numbers of packed SDAC runs (default: 1,2,4,8; --quick: 1,2)")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="wall time of the whole check (default: %(default)s): the agents share what the packs "
                             "leave, each getting an equal part of what is left when it starts (at least 20 s)")
    parser.add_argument("--pack-seconds", type=float, help="measuring window per pack (default: 15; --quick: 2)")
    parser.add_argument("--measure-agent", help=argparse.SUPPRESS)  # the child process of one agent
    return parser.parse_args(argv, namespace=Settings())


def main(argv: list[str] | None = None) -> int:
    settings = parse(argv)
    import torch

    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {settings.device}: CUDA is not available here; valid choices: cpu "
              "(with --quick, to check the script)", file=sys.stderr)
        return 2
    if settings.measure_agent:
        for record in measure_agent(settings.measure_agent, settings):
            print(json.dumps(record), flush=True)
        return 0
    began = time.perf_counter()
    print(header(settings, torch))
    packs = [int(k) for k in (settings.packs or ("1,2" if settings.quick else "1,2,4,8")).split(",")]
    pack_reserve_s = len(packs) * (pack_window_s(settings) + 25.0)  # start-up, warm-up and window of each pack
    print_agent_table(settings, deadline=began + settings.budget_s - pack_reserve_s)
    print_pack_table(packs, settings)
    print(f"\ntotal {time.perf_counter() - began:.0f} s")
    return 0


def header(settings: Settings, torch: Any) -> str:
    device = (torch.cuda.get_device_name(torch.device(settings.device)) if settings.device.startswith("cuda")
              else f"CPU ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)")
    setting = "--quick: cpu-smoke.yaml + small-nets.yaml, NOT paper settings" if settings.quick else "paper settings"
    return f"gpu_check: {device}; torch {torch.__version__}; {setting}; {ENV_ID} dims (obs {OBS_DIM}, act {ACT_DIM})"


# 1. Per agent -------------------------------------------------------------------------------------------------
def print_agent_table(settings: Settings, deadline: float) -> None:
    names = settings.agents.split(",")
    # Cheapest first, so that what they leave of the budget goes to the diffusion agents' compiles.
    order = sorted(names, key=lambda name: COST_ORDER.index(name) if name in COST_ORDER else len(COST_ORDER))
    records, notices = {}, set()
    for left, name in zip(range(len(order), 0, -1), order):
        timeout_s = max(20.0, (deadline - time.perf_counter()) / left)
        records[name] = (list(measure_agent(name, settings)) if settings.quick
                         else measure_in_child(name, settings, timeout_s))
        notices.update(record["notice"] for record in records[name] if "notice" in record)
    print(f"\n{markdown(AGENT_COLUMNS, [agent_row(name, records[name]) for name in names])}")
    for notice in sorted(notices):
        print(f"notice: {notice}")


def measure_in_child(name: str, settings: Settings, timeout_s: float) -> list[dict[str, Any]]:
    """One agent in a fresh process (its own CUDA context and compile caches), stopped after the time limit; the
    modes it finished are kept."""
    command = [sys.executable, __file__, "--measure-agent", name, "--device", settings.device]
    if settings.compile_agents:
        command += ["--compile-agents", settings.compile_agents]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        err = f"timeout ({timeout_s:.0f} s)"
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    done = {record["mode"] for record in records}
    why = err.strip().splitlines()[-1] if err.strip() else f"exit status {process.returncode}"
    return records + [{"mode": label, "na": why} for label, _ in MODES if label not in done]


def measure_agent(name: str, settings: Settings) -> Iterable[dict[str, Any]]:
    import torch

    compile_agents = settings.compile_agents or ("none" if settings.quick else ",".join(AGENTS))
    for label, mode in MODES:
        if mode is not None and name not in compile_agents.split(","):
            yield {"mode": label, "na": "skipped", "notice": f"compiled columns measured for: {compile_agents} "
                                                             "(--compile-agents)"}
        elif mode == "reduce-overhead" and not settings.device.startswith("cuda"):
            yield {"mode": label, "na": "CUDA only"}
        else:
            agent = build_agent(name, settings)
            if mode is not None and not hasattr(agent, "compile"):
                yield {"mode": label, "na": "n/a", "notice": "this checkout's agents have no compile() (issue 20, "
                                                             "item 1): the compiled columns are n/a"}
                continue
            yield {"mode": label, **time_agent(agent, mode, settings, torch)}


def build_agent(name: str, settings: Settings) -> Any:
    from algorithms import make_agent
    from algorithms.config import read_yaml

    overrides: dict[str, Any] = {}
    for path in QUICK_CONFIGS if settings.quick else ():
        overrides.update(read_yaml(path).get(name) or {})
    return make_agent(name, OBS_DIM, ACT_DIM, overrides, device=settings.device, seed=0, env_id=ENV_ID)


def time_agent(agent: Any, mode: str | None, settings: Settings, torch: Any) -> dict[str, Any]:
    import numpy as np

    from algorithms.testing import random_batch
    from update_speed import time_calls  # benchmarks/ is this script's folder

    cuda = settings.device.startswith("cuda")
    generator = torch.Generator().manual_seed(0)
    batches = [type(batch)(*(tensor.to(agent.device) for tensor in batch))
               for batch in (random_batch(OBS_DIM, ACT_DIM, agent.config.batch_size, terminal_fraction=0.01,
                                          generator=generator) for _ in range(4))]
    calls = iter(range(10**9))

    def update() -> None:
        float(agent.update(batches[next(calls) % len(batches)])["loss/critic"])  # a sync, as a logging loop has

    compile_before = compile_seconds()
    started = time.perf_counter()
    if mode is not None:
        agent.compile(mode)
    for _ in range(2 if settings.quick else 4):  # SDAC-style agents alternate policy and critic-only updates
        update()
    warmup_s = time.perf_counter() - started
    if cuda:
        torch.cuda.reset_peak_memory_stats(agent.device)
    min_updates, min_seconds = (2, 0.2) if settings.quick else (10, 2.0)
    seconds = time_calls(update, min_updates, min_seconds, multiple_of=2)
    states = np.random.default_rng(0).normal(size=(ACT_ENVS, OBS_DIM)).astype(np.float32)
    act_one = time_calls(lambda: agent.act(states[:1], deterministic=True), 5, min_seconds / 4)
    act_many = time_calls(lambda: agent.act(states), 5, min_seconds / 4)
    compiled_s = compile_seconds() - compile_before
    record = {"ms_update": 1e3 * seconds, "ms_act1": 1e3 * act_one, "ms_act_many": 1e3 * act_many,
              "compile_s": (compiled_s if compiled_s > 0 else warmup_s) if mode is not None else None}
    if cuda:
        record["peak_alloc_mb"] = torch.cuda.max_memory_allocated(agent.device) / 2**20
        record["peak_reserved_mb"] = torch.cuda.max_memory_reserved(agent.device) / 2**20
    return record


def compile_seconds() -> float:
    """The compile time the project's compile module counts (0 where it has none: the warm-up's wall is used)."""
    try:
        from algorithms.compiled import compile_seconds as counted
    except ImportError:
        return 0.0
    return counted()


def agent_row(name: str, records: list[dict[str, Any]]) -> list[str]:
    by_mode = {record["mode"]: record for record in records}
    eager = by_mode.get("eager", {})

    def cell(mode: str, key: str, digits: int = 1) -> str:
        record = by_mode.get(mode, {})
        return record.get("na") or ("-" if record.get(key) is None else f"{record[key]:.{digits}f}")

    compile_s = " / ".join(cell(label, "compile_s", 0) for label, mode in MODES if mode is not None)
    return [name, *(cell(label, "ms_update") for label, _ in MODES), compile_s, cell("eager", "ms_act1", 2),
            cell("eager", "ms_act_many", 2),
            *(f"{eager[key]:.0f}" if key in eager else "n/a" for key in ("peak_alloc_mb", "peak_reserved_mb"))]


# 2. Packed SDAC runs ------------------------------------------------------------------------------------------
def print_pack_table(packs: list[int], settings: Settings) -> None:
    # One torch thread per run in every pack: a GPU run's CPU side is the env and kernel launches, and more threads
    # than cores (8 runs x N) would slow the packs down for a reason that has nothing to do with the GPU (on a
    # shared 2-core machine, 2 threads per run measured 1 env step/s against 47 with 1).
    threads = 1
    rows, single = [], None
    for count in packs:
        rates = packed_rates(count, threads, settings)
        total = sum(rates)
        single = total if count == 1 else single
        rows.append([str(count), f"{total:.0f}", f"{total / count:.0f}",
                     f"{total / single:.2f}x" if single else "-"])
    print(f"\n{markdown(PACK_COLUMNS, rows)}")
    print(f"(env steps/s of each run after its warm-up, over the window where all runs of the pack are past it, "
          f"summed; {threads} torch thread(s) per run; the runs are processes of one pool, as in a SLURM task with "
          f"runs_per_task: K)")


def packed_rates(count: int, threads: int, settings: Settings) -> list[float]:
    from bench.launch.local_pool import run_local

    window_s = pack_window_s(settings)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        jobs = sdac_jobs(count, threads, settings, Path(folder))
        warmup = jobs[0].protocol["warmup_steps"] + 2 * jobs[0].protocol["log_every"]
        watch = RateWatch([job.name for job in jobs], warmup, window_s)
        run_local(jobs, count, watch.on_event)
    return watch.rates()


def pack_window_s(settings: Settings) -> float:
    return settings.pack_seconds or (2.0 if settings.quick else 15.0)


def sdac_jobs(count: int, threads: int, settings: Settings, results: Path) -> list[Any]:
    from bench.plan import layers
    from bench.plan.expand import Execution
    from bench.plan.spec import SweepSpec

    if settings.quick:
        spec = SweepSpec(name="pack", algos=["sdac"], envs=["Hopper"], seeds=list(range(count)), preset="none",
                         protocol="quick")
        protocol = {"total_steps": 100_000, "warmup_steps": 100, "eval_every": 100_000, "eval_episodes": 1}
        command_line = layers.from_command_line(QUICK_CONFIGS, protocol, ["protocol.log_every=20", "batch_size=32"])
    else:
        spec = SweepSpec(name="pack", algos=["sdac"], envs=["Hopper"], seeds=list(range(count)))
        protocol = {"total_steps": 1_000_000, "warmup_steps": 1000, "eval_every": 1_000_000, "eval_episodes": 1}
        command_line = layers.from_command_line((), protocol, ["protocol.log_every=100"])
    return spec.expand(results, command_line, Execution(settings.device, threads, checkpoint_every=0))


class RateWatch:
    """Reads the runs' progress events; once every run has been past its warm-up for ``window_s``, stops them all
    the way SLURM would (SIGTERM to this process: the pool forwards it, every run stops at its next step)."""

    def __init__(self, runs: list[str], warmup: int, window_s: float) -> None:
        self.warmup, self.window_s = warmup, window_s
        self.seen: dict[str, list[tuple[float, int]]] = {run: [] for run in runs}
        self.window_start: float | None = None
        self.stopped = False

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") != "progress" or event.get("job") not in self.seen:
            return
        now = time.monotonic()
        self.seen[event["job"]].append((now, int(event["step"])))
        if self.window_start is None and all(any(step >= self.warmup for _, step in points)
                                             for points in self.seen.values()):
            self.window_start = now
        if (self.window_start is not None and not self.stopped and now - self.window_start >= self.window_s
                and all(len(self._in_window(points)) >= 2 for points in self.seen.values())):
            self.stopped = True
            os.kill(os.getpid(), signal.SIGTERM)

    def _in_window(self, points: list[tuple[float, int]]) -> list[tuple[float, int]]:
        return [(t, step) for t, step in points if self.window_start is not None and t >= self.window_start]

    def rates(self) -> list[float]:
        rates = []
        for run, points in self.seen.items():
            inside = self._in_window(points)
            if len(inside) < 2:
                raise RuntimeError(f"{run}: too few progress events after its warm-up to measure a rate")
            (t0, s0), (t1, s1) = inside[0], inside[-1]
            rates.append((s1 - s0) / (t1 - t0))
        return rates


def markdown(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


if __name__ == "__main__":
    sys.exit(main())
