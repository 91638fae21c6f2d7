"""The ``bench`` command: argument parsing and printing only; the work happens in the modules it calls."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

import algorithms
from algorithms.config import ConfigError
from bench import records
from bench.envs import SHORT_NAMES
from bench.protocols import DEFAULT_PROTOCOL, available_protocols, load_protocol
from bench.run import INTERRUPTED_EXIT_CODE

PROTOCOL_FLAGS = {  # flag attribute -> Protocol field
    "steps": "total_steps", "eval_every": "eval_every", "eval_episodes": "eval_episodes",
    "warmup": "warmup_steps", "n_envs": "n_envs", "utd": "utd", "env_version": "env_version",
}
PLUGIN_ENV_VAR = "BENCH_PLUGINS"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Seeded sweeps of online RL algorithms.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="expand algos x envs x seeds into runs and execute (or resume) them")
    _grid_arguments(run, required=True)
    run.add_argument("--eval-every", type=int, help="env steps between evaluations")
    run.add_argument("--eval-episodes", type=int, help="episodes per evaluation")
    run.add_argument("--warmup", type=int, help="uniform-random warm-up env steps")
    run.add_argument("--n-envs", type=int, help="parallel training envs")
    run.add_argument("--utd", type=float, help="gradient updates per env step")
    run.add_argument("--config", action="append", default=[], type=Path, metavar="FILE",
                     help="YAML overrides: sections named by algorithm or 'protocol' (applied before -o); repeatable")
    run.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                     help="config override: key=v (all algos), <algo>.key=v, protocol.key=v; repeatable")
    run.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel runs (default: cores)")
    run.add_argument("--threads", type=int, help="torch threads per run (default: cores / workers)")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    run.add_argument("--checkpoint-every", type=int,
                     help="env steps between checkpoints (default: 5%% of the budget; 0: never)")
    run.add_argument("--overwrite", action="store_true",
                     help="discard existing records of the selected runs and start them over")
    run.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                     help=f"import MODULE to register extra algorithms (also ${PLUGIN_ENV_VAR}, comma-separated)")
    run.add_argument("--dry-run", action="store_true", help="print the runs and exit without writing anything")

    status = commands.add_parser("status", help="state of runs, read from their directories")
    status.add_argument("path", nargs="?", type=Path, help="results root, suite folder or run folder")
    _grid_arguments(status, required=False)

    commands.add_parser("list", help="show algorithms, environments and protocols")

    from bench import probe
    probe.add_arguments(commands.add_parser(
        "probe", help="draw action samples and episodes of agents trained on the MultiGoal2D-v0 probe"))
    return parser


def _grid_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """The flags that name a set of runs; shared by `run` and `status`."""
    parser.add_argument("--algos", required=required, help="comma-separated algorithm names (see `bench list`)")
    parser.add_argument("--envs", required=required, help="comma-separated env short names or Gymnasium ids")
    parser.add_argument("--seeds", default="1", help="count (10 -> 0..9), list (3,5,7) or range (0-4)")
    parser.add_argument("--suite", default="default", help="results/<suite>/... (default: %(default)s)")
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL, help="protocol name or YAML path (default: %(default)s)")
    parser.add_argument("--steps", type=int, help="total env steps (protocol total_steps)")
    parser.add_argument("--env-version", help="version for short env names, e.g. v4")
    parser.add_argument("--results-dir", type=Path,
                        help=f"results root (default: ${records.RESULTS_ENV_VAR} or ./results)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # Log files (CI, SLURM) get a wide fixed width so run names are not cut; terminals use their own width.
    console = Console(log_path=False, width=None if sys.stdout.isatty() else 150)
    try:
        if args.command == "run":
            return command_run(args, argv, console)
        if args.command == "status":
            return command_status(args, console)
        if args.command == "probe":
            from bench import probe
            return probe.command(args, console)
        return command_list(console)
    except ConfigError as error:
        Console(stderr=True).print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        return 2


def command_run(args: argparse.Namespace, argv: list[str], console: Console) -> int:
    from bench import sweep

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    plugins = [*args.plugin, *filter(None, os.environ.get(PLUGIN_ENV_VAR, "").split(","))]
    jobs = sweep.expand(
        sweep.split_names(args.algos), sweep.split_names(args.envs), sweep.parse_seeds(args.seeds),
        suite=args.suite, protocol=args.protocol, protocol_overrides=_protocol_flags(args),
        overrides=args.override, results_root=args.results_dir, device=_device(args.device),
        torch_threads=args.threads or max(1, (os.cpu_count() or 1) // args.workers),
        argv=["bench", *argv], plugins=plugins, checkpoint_every=args.checkpoint_every, config_files=args.config,
    )
    if args.dry_run:
        console.print(_dry_run_table(jobs))
        return 0
    if args.overwrite:
        running = [job.name for job in jobs if records.is_running(Path(job.run_dir))]
        if running:
            raise ConfigError(f"--overwrite: {', '.join(running)} running in another process; stop it first")
        for job in jobs:
            records.clear_run(Path(job.run_dir))
    else:
        conflicts = sweep.find_conflicts(jobs)
        if conflicts:
            raise ConfigError(
                f"{len(conflicts)} run(s) already hold a different configuration; not resuming them:\n  "
                + "\n  ".join(conflicts) + "\nUse another --suite, or --overwrite to discard them and start over."
            )
    return _execute(jobs, args.workers, console)


def _execute(jobs: list, workers: int, console: Console) -> int:
    from bench.executors import run_local
    from bench.progress import SweepProgress, summary_table

    todo = sum(records.run_status(Path(job.run_dir)).state != "done" for job in jobs)
    console.print(f"{len(jobs)} runs ({todo} to do, {len(jobs) - todo} already done) with {workers} workers; "
                  f"results in {Path(jobs[0].run_dir).parents[2].resolve()}")
    with SweepProgress(len(jobs), jobs[0].protocol["total_steps"], console) as progress:
        results = run_local(jobs, min(workers, len(jobs)), progress.handle)
    console.print(summary_table(results))
    console.print(f"results: {Path(jobs[0].run_dir).parents[2].resolve()}")
    by_status = {status: [job.name for job, result in zip(jobs, results) if result.get("status") == status]
                 for status in ("failed", "interrupted", "busy")}
    if by_status["busy"]:
        console.print(f"[yellow]{len(by_status['busy'])} run(s) are running in another process[/], left alone: "
                      + ", ".join(by_status["busy"]))
    if by_status["failed"]:
        console.print(f"[red]{len(by_status['failed'])} run(s) failed[/] (traceback in <run dir>/error.txt): "
                      + ", ".join(by_status["failed"]))
        return 1
    if by_status["interrupted"] or by_status["busy"]:
        console.print(f"{len(by_status['interrupted'])} run(s) stopped before finishing (the ones that had "
                      "started wrote a checkpoint): run the same command again to resume")
        return INTERRUPTED_EXIT_CODE
    return 0


def _protocol_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {field: getattr(args, flag) for flag, field in PROTOCOL_FLAGS.items()
            if getattr(args, flag, None) is not None}


def command_status(args: argparse.Namespace, console: Console) -> int:
    from bench import status, sweep

    if args.algos or args.envs:
        if not (args.algos and args.envs):
            raise ConfigError("bench status: give both --algos and --envs (or a path)")
        jobs = sweep.expand(sweep.split_names(args.algos), sweep.split_names(args.envs),
                            sweep.parse_seeds(args.seeds), suite=args.suite, protocol=args.protocol,
                            protocol_overrides=_protocol_flags(args), results_root=args.results_dir)
        run_dirs = [Path(job.run_dir) for job in jobs]
    else:
        root = args.path or args.results_dir or records.default_results_root()
        if not root.exists():
            raise ConfigError(f"bench status: {str(root)!r} does not exist")
        run_dirs = status.find_run_dirs(root)
    rows = [status.row_for(run_dir) for run_dir in run_dirs]
    console.print(_status_table(rows))
    console.print(_totals_table(status.totals(rows), status.STATES))
    return 0


def _status_table(rows: list) -> Table:
    table = Table(title=f"{len(rows)} runs")
    for column in ("run", "state", "detail"):
        table.add_column(column)
    colours = {"done": "green", "running": "cyan", "interrupted": "yellow", "failed": "red"}
    for row in rows:
        colour = colours.get(row.state)
        table.add_row(row.name, f"[{colour}]{row.state}[/]" if colour else row.state, row.detail)
    return table


def _totals_table(totals: dict, states: Sequence[str]) -> Table:
    table = Table(title="totals per algorithm and environment")
    for column in ("algo", "env", *states):
        table.add_column(column, justify="left" if column in ("algo", "env") else "right")
    for (algo, env_id), counts in totals.items():
        table.add_row(algo, env_id, *(str(counts.get(state, 0)) for state in states))
    return table


def _device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {choice!r}: CUDA is not available here; valid choices: cpu, auto")
    if not (choice == "cpu" or choice.startswith("cuda")):
        raise ConfigError(f"--device {choice!r}: valid choices are cpu, cuda, cuda:N, auto")
    return choice


def _dry_run_table(jobs: list) -> Table:
    table = Table(title=f"bench run --dry-run: {len(jobs)} runs (nothing written)")
    for column in ("run", "state", "directory"):
        table.add_column(column)
    for job in jobs:
        state = records.run_status(Path(job.run_dir)).state
        action = {"done": "skip (DONE)", "not started": "run", "interrupted": "resume",
                  "failed": "resume (failed before)", "running": "leave (running)"}[state]
        table.add_row(job.name, action, job.run_dir)
    return table


def command_list(console: Console) -> int:
    algos = Table(title="algorithms")
    algos.add_column("name")
    algos.add_column("description")
    for name in algorithms.available_algorithms():
        algos.add_row(name, algorithms.get_algorithm(name).description)
    envs = Table(title="environments (short name -> pinned id; any registered Gymnasium id also works)")
    envs.add_column("short name")
    envs.add_column("id")
    for short, env_id in SHORT_NAMES.items():
        envs.add_row(short, env_id)
    protocols = Table(title=f"protocols (default: {DEFAULT_PROTOCOL})")
    for column in ("name", "steps", "eval every x episodes", "warm-up", "n_envs", "utd"):
        protocols.add_column(column)
    for name in available_protocols():
        p = load_protocol(name)
        protocols.add_row(name, f"{p.total_steps:,}", f"{p.eval_every:,} x {p.eval_episodes}",
                          f"{p.warmup_steps:,}", str(p.n_envs), f"{p.utd:g}")
    for table in (algos, envs, protocols):
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
