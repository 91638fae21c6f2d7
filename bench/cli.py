"""The ``bench`` command: argument parsing, a dispatch table and printing; the work happens in the wings it calls
(see bench/__init__.py). Heavy imports (torch, matplotlib, optuna) happen inside the commands that need them, so
`bench --help` and `bench status` stay fast."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

import algorithms
from algorithms.config import ConfigError  # noqa: I001  (torch loads on first use, see algorithms/__init__)
from bench import plugins as plugin_loader
from bench.jobs import DEFAULT_PROTOCOL, RESULTS_ENV_VAR, RunState, default_results_root
from bench.plan import flags, layers
from bench.plan import spec as sweep_specs
from bench.plan.expand import Execution
from bench.plan.presets import DEFAULT_PRESET, available_presets, load_preset
from bench.plan.protocols import available_protocols, load_protocol
from bench.plan.spec import EXECUTORS
from bench.plugins import PLUGIN_ENV_VAR
from bench.records.folders import check_readable_folder, check_writable_folder, path_error_line

PROTOCOL_FLAGS = {  # flag attribute -> Protocol field
    "steps": "total_steps", "eval_every": "eval_every", "eval_episodes": "eval_episodes",
    "warmup": "warmup_steps", "n_envs": "n_envs", "utd": "utd", "env_version": "env_version",
}


def build_parser() -> argparse.ArgumentParser:
    parser = flags.OneLineParser(prog="bench", description="Seeded sweeps of online RL algorithms.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="expand a sweep spec, or algos x envs x seeds, into runs and execute, "
                                          "resume or submit them")
    run.add_argument("spec", nargs="?", type=Path, help="sweep spec YAML (sweeps/*.yaml); or give --algos and --envs")
    _grid_arguments(run)
    run.add_argument("--eval-every", type=flags.COUNT, help="env steps between evaluations")
    run.add_argument("--eval-episodes", type=flags.COUNT, help="episodes per evaluation")
    run.add_argument("--warmup", type=flags.NON_NEGATIVE, help="uniform-random warm-up env steps")
    run.add_argument("--n-envs", type=flags.COUNT, help="parallel training envs")
    run.add_argument("--utd", type=flags.positive_float, help="gradient updates per env step")
    run.add_argument("--config", action="append", default=[], type=Path, metavar="FILE",
                     help="YAML overrides: sections named by algorithm or 'protocol' (applied before -o); repeatable")
    run.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                     help="config override: key=v (all algos), <algo>.key=v, protocol.key=v; repeatable")
    run.add_argument("--workers", type=flags.COUNT, default=os.cpu_count() or 1,
                     help="parallel runs of the local executor (default: cores)")
    run.add_argument("--threads", type=flags.COUNT, help="torch threads per run (default: cores / workers; "
                                                  "--executor slurm: the profile's cpus_per_task)")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s: cuda if "
                                                      "available; --executor slurm: cuda if the profile has GPUs)")
    _compile_argument(run)
    run.add_argument("--checkpoint-every", type=flags.NON_NEGATIVE,
                     help="env steps between checkpoints (default: 5%% of the budget; 0: never)")
    run.add_argument("--overwrite", action="store_true",
                     help="discard existing records of the selected runs and start them over")
    run.add_argument("--dry-run", action="store_true", help="print the runs and exit without writing anything")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="also print a line per checkpoint (default: one line per run per evaluation)")
    run.add_argument("--executor", choices=EXECUTORS,
                     help="local: process pool here (default); slurm: submit job arrays and exit; "
                          "debug: submitit's in-process executor")
    run.add_argument("--profile", type=Path, metavar="FILE",
                     help="cluster profile YAML for --executor slurm (see sweeps/profiles/)")
    _log_argument(run)
    run.add_argument("--devices", metavar="LIST", help="local executor: spread the runs over these devices, "
                                                        "round-robin (cuda:0,cuda:1; cpu,cpu to try it out)")
    run.add_argument("--runs-per-task", type=int, metavar="K",
                     help="--executor slurm/debug: K runs at once in each array task, sharing its GPUs and CPUs "
                          "(default: the profile's runs_per_task, 1)")

    status = commands.add_parser("status", help="state of runs, read from their directories (+ SLURM queue state)")
    status.add_argument("path", nargs="?", type=Path, help="results root, suite folder, run folder or sweep spec")
    # A flag plus --every (not an optional value) so that `bench status --watch results/x` reads the path as a path.
    status.add_argument("--watch", action="store_true",
                        help="refresh the running runs' last evaluation, env steps/s and ETA until none is running; "
                             "Ctrl-C stops watching, not the runs")
    status.add_argument("--every", type=flags.positive_float, default=5.0, metavar="SECONDS", help="--watch's refresh interval")
    _grid_arguments(status)

    _plugin_argument(commands.add_parser("list", help="show algorithms, environments and protocols"))
    _report_parsers(commands)

    _probe_parser(commands)
    _eval_parser(commands)
    _tune_parser(commands)
    return parser


def _grid_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that name a set of runs; shared by `run` and `status`. Defaults are applied in
    bench.plan.spec.from_request, so that flags given next to a sweep spec can be told apart from defaults."""
    parser.add_argument("--algos", help="comma-separated algorithm names (see `bench list`)")
    parser.add_argument("--envs", help="comma-separated env short names or Gymnasium ids")
    parser.add_argument("--seeds", help="count (10 -> 0..9), list (3,5,7) or range (0-4) (default: 1)")
    parser.add_argument("--suite", help="results/<suite>/... (default: default; with a spec: its name)")
    parser.add_argument("--preset", help=f"preset name or YAML path: a paper's protocol and per-algorithm settings "
                        f"(default: {DEFAULT_PRESET}; none: every algorithm at its defaults; see `bench list`)")
    parser.add_argument("--protocol", help="protocol name or YAML path (default: the preset's)")
    parser.add_argument("--steps", type=flags.COUNT, help="total env steps (protocol total_steps)")
    parser.add_argument("--env-version", help="version for short env names, e.g. v4")
    parser.add_argument("--results-dir", type=Path,
                        help=f"results root (default: ${RESULTS_ENV_VAR} or ./results)")
    _plugin_argument(parser)


def _log_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", metavar="SINKS", help="also send the logged metrics to tensorboard and/or wandb "
                        "(comma-separated; none: no sink; default: the spec's or cluster profile's log:, else none; "
                        "docs/logging.md)")


def _compile_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compile", nargs="?", const="default", choices=algorithms.config.COMPILE_MODES,
                        metavar="MODE", help="torch.compile each agent's networks and sampling chains (same math; "
                                             "compile time is logged apart): default, or reduce-overhead for CUDA "
                                             "graphs (untested on GPU), or max-autotune-no-cudagraphs")


def _plugin_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help=f"import MODULE (a module name or a path to a .py file) to register extra algorithms; "
                             f"repeatable; also ${PLUGIN_ENV_VAR}, comma-separated")


COMMANDS: dict[str, Callable[[argparse.Namespace, list[str], Console], int]] = {}


def command(*names: str):
    def register(function):
        for name in names:
            COMMANDS[name] = function
        return function
    return register


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from bench.launch.progress import command_console
    from bench.launch.resolve import sleep_waiting_threads

    sleep_waiting_threads()
    console = command_console()
    try:
        return COMMANDS[args.command](args, argv, console)
    except (ConfigError, FileNotFoundError) as error:
        Console(stderr=True).print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:  # a Ctrl-C no command handled itself (sweeps and reports do): a line, not a traceback
        Console(stderr=True).print(f"interrupted: bench {args.command} stopped", highlight=False)
        return 130
    except OSError as error:  # a path the user gave that cannot be used; anything else keeps its traceback
        line = path_error_line(error)
        if line is None:
            raise
        Console(stderr=True).print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
        return 2


def _plugins(args: argparse.Namespace) -> list[str]:
    return plugin_loader.requested(args.plugin)


def _protocol_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {field: getattr(args, flag) for flag, field in PROTOCOL_FLAGS.items()
            if getattr(args, flag, None) is not None}


def _requested_sweep(args: argparse.Namespace, command_name: str, plugins: Sequence[str] = ()):
    return sweep_specs.from_request(
        args.spec, algos=args.algos, envs=args.envs, seeds=args.seeds, suite=args.suite, protocol=args.protocol,
        preset=args.preset,
        executor=getattr(args, "executor", None), profile=getattr(args, "profile", None), plugins=plugins,
        command=command_name, log=getattr(args, "log", None))


# bench run ------------------------------------------------------------------------------------------------
@command("run")
def command_run(args: argparse.Namespace, argv: list[str], console: Console) -> int:
    from bench.launch.preview import preview
    from bench.launch.resolve import oversubscription_warning, resolve_log, resolve_placement
    from bench.launch.sweep import planned_actions, start_sweep

    sweep = _requested_sweep(args, "bench run", _plugins(args))
    placement = resolve_placement(sweep.executor, sweep.profile, args.device, args.threads, args.workers,
                                  args.runs_per_task, args.devices)
    results_root = args.results_dir or default_results_root()
    if placement.executor == "slurm":  # tasks run in their code snapshot's directory, maybe on other nodes
        results_root = results_root.resolve()
    if not args.dry_run:
        check_writable_folder(results_root / sweep.name, "results folder")
    command_line = layers.from_command_line(args.config, _protocol_flags(args), args.override)
    sweep.log = list(resolve_log(sweep.log, placement))  # sweep.yaml records what the runs use
    execution = Execution(placement.device, placement.threads, args.checkpoint_every, ("bench", *argv),
                          tuple(sweep.log), args.compile)
    jobs = sweep.expand(results_root, command_line, execution)
    _print_plan(preview(jobs), console)
    _warn(oversubscription_warning(placement, len(jobs)), console)
    if args.dry_run:
        console.print(_dry_run_table(planned_actions(jobs)))
        return 0
    return start_sweep(sweep, jobs, placement, console, args.overwrite, [path.resolve() for path in args.config],
                       args.verbose)


def _print_plan(plan, console: Console) -> None:
    table = Table(title="plan: per run (the seeds of a row share its config)")
    for column in ("algo", "env", "seeds", "preset / protocol", "env steps", "updates", "CPU-h per run",
                   "replay", "changed from the algorithm's defaults"):
        table.add_column(column, justify="right" if column in ("seeds", "env steps", "updates", "CPU-h per run")
                         else "left")
    for group in plan.groups:
        hours = "?" if group.cpu_hours is None else f"{'' if group.measured_config else '~'}{group.cpu_hours:,.2f}"
        changed = ", ".join(f"{key}={_short(value)}" for key, (_, value) in group.changed.items()) or "-"
        table.add_row(group.algo, group.env_id, str(group.seeds), f"{group.preset} / {group.protocol_name}",
                      f"{group.env_steps:,}", f"{group.updates:,}", hours, f"{group.replay_gb:.2f} GB", changed)
    console.print(table)
    console.print(f"estimated total: {plan.total_cpu_hours:,.1f} CPU-hours at one thread on the reference machine "
                  f"(bench/data/update_costs.yaml; ~: the config differs from the measured defaults)",
                  highlight=False, soft_wrap=True)
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


def _warn(warning: str | None, console: Console) -> None:
    if warning:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "x".join(map(str, value))
    return str(value)


def _dry_run_table(actions: list) -> Table:
    table = Table(title=f"bench run --dry-run: {len(actions)} runs (nothing written)")
    for column in ("run", "state", "directory"):
        table.add_column(column)
    for job, action in actions:
        table.add_row(job.name, action, job.run_dir)
    return table


# bench status ---------------------------------------------------------------------------------------------
@command("status")
def command_status(args: argparse.Namespace, argv: list[str], console: Console) -> int:
    from bench.launch import status

    if args.path is not None and args.path.suffix in (".yaml", ".yml") or args.algos or args.envs:
        args.spec = args.path if args.path is not None and args.path.suffix in (".yaml", ".yml") else None
        plugin_loader.load_plugins(_plugins(args))  # a spec's own plugins are loaded by expand
        jobs = _requested_sweep(args, "bench status").expand(
            args.results_dir, [layers.from_protocol_flags(_protocol_flags(args))])
        list_runs = lambda: [job.directory for job in jobs]  # noqa: E731
    else:
        root = args.path or args.results_dir or default_results_root()
        check_readable_folder(root, "bench status:")
        list_runs = lambda: status.status_run_dirs(root)  # noqa: E731 - runs that start later appear too
    if args.watch:
        from bench.launch.watch import watch_runs

        return watch_runs(list_runs, args.every, console)
    rows = status.rows_for(list_runs())
    console.print(_status_table(rows))
    console.print(_totals_table(status.totals(rows), status.STATES))
    for line in status.attention_lines(rows):
        console.print(line, style="red", highlight=False, soft_wrap=True, markup=False)
    return 0


def _status_table(rows: list) -> Table:
    table = Table(title=f"{len(rows)} runs")
    with_queue = any(row.queue for row in rows)
    for column in ("run", "state", "detail", *(["SLURM queue"] if with_queue else [])):
        table.add_column(column)
    colours = {RunState.DONE: "green", RunState.SUSPECT: "red", RunState.PRUNED: "magenta", RunState.RUNNING: "cyan",
               RunState.INTERRUPTED: "yellow", RunState.FAILED: "red", RunState.PENDING: "blue"}
    for row in rows:
        colour = colours.get(row.state)
        table.add_row(row.name, f"[{colour}]{row.state}[/]" if colour else str(row.state), escape(row.detail),
                      *([row.queue] if with_queue else []))
    return table


def _totals_table(totals: dict, states: Sequence[str]) -> Table:
    table = Table(title="totals per algorithm and environment")
    for column in ("algo", "env", *map(str, states)):
        table.add_column(column, justify="left" if column in ("algo", "env") else "right")
    for (algo, env_id), counts in totals.items():
        table.add_row(algo, env_id, *(str(counts.get(state, 0)) for state in states))
    return table


# bench list -----------------------------------------------------------------------------------------------
@command("list")
def command_list(args: argparse.Namespace, argv: list[str], console: Console) -> int:
    from bench.plan.envs import SHORT_NAMES

    plugin_loader.load_plugins(_plugins(args))

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
    presets = Table(title=f"presets (default: {DEFAULT_PRESET}; docs/protocols.md#presets)")
    for column in ("name", "protocol", "configures", "description"):
        presets.add_column(column)
    for name in available_presets():
        preset = load_preset(name)
        presets.add_row(name, preset.protocol or DEFAULT_PROTOCOL,
                        ", ".join(sorted({*preset.algorithms, *(a for s in preset.env_algorithms.values() for a in s)}))
                        or "-", preset.description)
    protocols = Table(title="protocols")
    for column in ("name", "steps", "eval every x episodes", "warm-up", "n_envs", "utd"):
        protocols.add_column(column)
    for name in available_protocols():
        p = load_protocol(name)
        protocols.add_row(name, f"{p.total_steps:,}", f"{p.eval_every:,} x {p.eval_episodes}",
                          f"{p.warmup_steps:,}", str(p.n_envs), f"{p.utd:g}")
    for table in (algos, envs, presets, protocols):
        console.print(table)
    return 0


# bench collect / report -----------------------------------------------------------------------------------
def _report_parsers(commands) -> None:
    collect = commands.add_parser("collect", help="gather run records into tidy Parquet tables (evals, runs)")
    collect.add_argument("paths", nargs="+", type=Path, help="suite folders (or results roots, or run folders)")
    collect.add_argument("--out", type=Path, help="folder for evals.parquet and runs.parquet (default: <suite>/report)")
    _suspect_argument(collect)

    report = commands.add_parser("report", help="rliable statistics, figures and tables from run records")
    report.add_argument("paths", nargs="+", type=Path, help="suite folders (or results roots, or run folders)")
    report.add_argument("--out", type=Path, help="output folder (default: <suite>/report)")
    report.add_argument("--normalize", default="table", help="table (shipped reference returns, default), "
                        "minmax (over the compared runs) or none")
    report.add_argument("--reps", type=flags.COUNT, help="bootstrap replications (default: draft setting)")
    report.add_argument("--final", action="store_true", help="publication setting for bootstrap replications")
    report.add_argument("--bootstrap-seed", type=flags.NON_NEGATIVE, default=0, help="seed of every bootstrap (default: %(default)s)")
    report.add_argument("--points", type=flags.integer(2), default=20, help="grid points of interpolated curves (default: %(default)s)")
    report.add_argument("--include-incomplete", action="store_true",
                        help="use unfinished runs' last evaluation in aggregates and tables (default: left out)")
    report.add_argument("--table-error", default="ci", help="ci (95%% Student t, default) or std")
    _suspect_argument(report)


def _suspect_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--include-suspect", action="store_true",
                        help="use DONE runs whose files disagree (the summary against the evaluation log; see `bench status`) "
                             "(default: left out, with a warning)")


@command("collect", "report")
def command_report(args: argparse.Namespace, argv: list[str], console: Console) -> int:
    """`bench collect` and `bench report`: both read the run directories; collect stops at the Parquet tables."""
    import matplotlib

    matplotlib.use("Agg")  # written headless (SLURM nodes, CI); bench.report.plots leaves it to notebooks
    from bench.report import builder as reporting, collect as collecting  # heavy imports (matplotlib, rliable)

    for path in args.paths:
        check_readable_folder(path, "results folder")
    out = args.out or reporting.default_output(args.paths)
    check_writable_folder(out, "output folder")
    if args.command == "collect":
        collected = collecting.collect(args.paths, args.include_suspect)
        _print_skipped(collected.skipped, console)
        for warning in reporting.suspect_warnings(collected.suspect, args.include_suspect):
            console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        paths = collected.save(out)
        console.print(f"{len(collected.runs)} runs, {len(collected.evals)} evaluation rows -> "
                      + ", ".join(map(str, paths)), highlight=False, soft_wrap=True)
        return 0
    if args.reps is not None and args.final:
        raise ConfigError("give either --reps or --final, not both")
    reps = reporting.FINAL_REPS if args.final else (reporting.DRAFT_REPS if args.reps is None else args.reps)
    options = reporting.ReportOptions(normalize=args.normalize, reps=reps, bootstrap_seed=args.bootstrap_seed,
                                      points=args.points, include_incomplete=args.include_incomplete,
                                      table_error=args.table_error, include_suspect=args.include_suspect)
    try:
        with console.status(f"reporting on {', '.join(map(str, args.paths))} ({reps} bootstrap replications)"):
            report = reporting.make_report(args.paths, out, options)
    except KeyboardInterrupt:
        Console(stderr=True).print(f"interrupted: no report written; {out} is as it was", highlight=False,
                                   soft_wrap=True)
        return 130
    _print_skipped(report.skipped, console)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"[dim]note:[/] {note}", highlight=False, soft_wrap=True)
    console.print(f"report: {report.markdown}  ({len(report.files)} files in {report.seconds:.1f} s)",
                  highlight=False, soft_wrap=True)
    return 0


def _print_skipped(skipped: list[str], console: Console) -> None:
    for reason in skipped:
        console.print(f"[yellow]warning:[/] skipped unreadable run: {reason}", highlight=False, soft_wrap=True)


# bench probe ----------------------------------------------------------------------------------------------
def _probe_parser(commands) -> None:
    from bench.report.probe import DEFAULT_STATES

    probe = commands.add_parser("probe", help="draw action samples and episodes of agents trained on the "
                                              "MultiGoal2D-v0 probe")
    probe.add_argument("paths", nargs="+", type=Path,
                       help="suite folders or run folders (runs on other envs are skipped)")
    probe.add_argument("--out", type=Path, help="figure path, .png (a .pdf is written next to it); "
                       "default: <first path>/probe-multigoal.png")
    probe.add_argument("--samples", type=flags.COUNT, default=500, help="actions drawn per fixed state (default: %(default)s)")
    probe.add_argument("--episodes", type=flags.COUNT, default=40, help="stochastic episodes per agent (default: %(default)s)")
    probe.add_argument("--states", default=";".join(f"{x:g},{y:g}" for x, y in DEFAULT_STATES), help="fixed states 'x,y;x,y;...' (default: %(default)s)")
    probe.add_argument("--seed", type=flags.NON_NEGATIVE, default=0, help="seed of the sampling and of the episodes' starts")
    _plugin_argument(probe)


@command("probe")
def command_probe(args: argparse.Namespace, argv: list[str], console: Console) -> int:
    from bench.report import probe

    probes, states, written = probe.run_probe(args.paths, args.out, args.samples, args.episodes, args.states,
                                              args.seed, _plugins(args))
    console.print(probe.summary_table(probes, states))
    console.print("figure: " + ", ".join(str(path) for path in written))
    return 0


# bench eval -----------------------------------------------------------------------------------------------
def _eval_parser(commands) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a trained run's agent again; optionally record a video")
    evaluate.add_argument("run_dir", type=Path, help="a run folder: results/<suite>/<algo>/<env>/seed=<k>")
    evaluate.add_argument("--episodes", type=int, help="episodes (default: the run's protocol eval_episodes)")
    evaluate.add_argument("--checkpoint", default="last", metavar="PATH|last",
                          help="checkpoint file, or last: the run's newest, the final agent of a DONE run "
                               "(default: %(default)s)")
    evaluate.add_argument("--stochastic", action="store_true", help="act with the exploring policy, not the "
                                                                    "deterministic one the trainer evaluates")
    evaluate.add_argument("--video", type=Path, metavar="FILE.mp4", help="record the first episode (pip install "
                                                                          "-e '.[video]')")
    _plugin_argument(evaluate)


@command("eval")
def command_eval(args: argparse.Namespace, argv: list[str], console: Console) -> int:
    from bench.plan.dmc import choose_headless_gl
    from bench.train.evaluate import check_video_path, evaluate_run, summary_lines

    notice = choose_headless_gl() if args.video and check_video_path(args.video) else None  # before any renderer
    if notice:
        console.print(notice, highlight=False)
    plugin_loader.load_plugins(_plugins(args))

    result = evaluate_run(args.run_dir, args.episodes, args.checkpoint, args.stochastic, args.video)
    for line in summary_lines(result):
        console.print(line, highlight=False, soft_wrap=True)
    return 0


# bench tune -----------------------------------------------------------------------------------------------
def _tune_parser(commands) -> None:
    tune = commands.add_parser("tune", help="Optuna study over an algorithm's search space; trials are ordinary runs")
    tune.add_argument("--algo", help="algorithm to tune (search space: algorithms/configs/search/<algo>.yaml)")
    tune.add_argument("--env", action="append", default=[], help="environment (repeatable: the objective averages "
                      "normalized scores over envs)")
    tune.add_argument("--trials", type=flags.COUNT, default=20, help="trials in the study, over all workers (default: 20)")
    tune.add_argument("--seeds", default="1", help="seeds per trial: count, list or range (default: 1)")
    tune.add_argument("--study", help="study name and folder <results>/<study>/ (default: <algo>-<env ids>)")
    tune.add_argument("--storage", help="Optuna storage: sqlite:///file.db (default: <results>/<study>/study.db; "
                      "one machine only), journal:/shared/path/study.journal or postgresql://... (clusters)")
    tune.add_argument("--search", type=Path, metavar="FILE", help="search space YAML (default: the algorithm's)")
    tune.add_argument("--pruner", default="median", help="median (default), hyperband or none")
    tune.add_argument("--pruner-startup", type=flags.NON_NEGATIVE, default=3,
                      help="finished trials before the median pruner prunes (default: %(default)s)")
    tune.add_argument("--pruner-warmup", type=flags.NON_NEGATIVE, help="evaluations of a trial before it can be pruned "
                      "(default: those up to the end of warm-up, which only score the untrained network)")
    tune.add_argument("--startup-trials", type=flags.NON_NEGATIVE,
                      help="random trials before TPE takes over (default: trials/3, between 2 and 10)")
    tune.add_argument("--sampler-seed", type=flags.NON_NEGATIVE, default=0, help="TPE seed; worker k uses seed+k (default: 0)")
    tune.add_argument("--workers", type=flags.COUNT, default=1, help="parallel workers on the study (default: 1)")
    tune.add_argument("--threads", type=flags.COUNT, help="torch threads per worker (default: cores / workers)")
    tune.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    tune.add_argument("--executor", choices=("local", "slurm"), default="local",
                      help="local: worker processes here (default); slurm: a worker array, submit and exit")
    tune.add_argument("--profile", type=Path, metavar="FILE", help="cluster profile YAML for --executor slurm")
    _log_argument(tune)
    tune.add_argument("--preset", default=DEFAULT_PRESET, help=f"preset name or YAML path (default: {DEFAULT_PRESET})")
    tune.add_argument("--protocol", help="protocol name or YAML path (default: the preset's)")
    tune.add_argument("--steps", type=flags.COUNT, help="env steps per run")
    tune.add_argument("--eval-every", type=flags.COUNT, help="env steps between evaluations (= between pruning decisions)")
    tune.add_argument("--eval-episodes", type=flags.COUNT, help="episodes per evaluation")
    tune.add_argument("--warmup", type=flags.NON_NEGATIVE, help="uniform-random warm-up env steps")
    tune.add_argument("--env-version", help="version for short env names, e.g. v4")
    tune.add_argument("--config", action="append", default=[], type=Path, metavar="FILE",
                      help="YAML overrides applied under every trial's sampled values (as in bench run)")
    tune.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                      help="fixed config override for every trial (as in bench run); a searched key is overridden too")
    _plugin_argument(tune)
    tune.add_argument("--results-dir", type=Path, help=f"results root (default: ${RESULTS_ENV_VAR} or ./results)")
    tune.add_argument("--show", action="store_true", help="print best trials and importances, save plots; run nothing")
    tune.add_argument("--export", type=Path, metavar="FILE",
                      help="write the best parameters as a `bench run --config` file; run nothing")


@command("tune")
def command_tune(args: argparse.Namespace, argv: list[str], console: Console) -> int:
    from bench.tune import export, settings as tune_settings, study as studies, workers

    results_root = (args.results_dir or default_results_root()).resolve()
    study_name = args.study
    if study_name is None:
        if not (args.algo and args.env):
            raise ConfigError("bench tune: give --algo and --env (or --study NAME with --show / --export)")
        study_name = tune_settings.default_study_name(args.algo, args.env)
    study_dir = results_root / study_name
    storage = args.storage or studies.default_storage(study_dir)
    studies.check_storage_url(storage)
    plugins = plugin_loader.load_plugins(_plugins(args))  # module names: what spawned workers and SLURM tasks import
    if args.show or args.export:  # the export validates the best parameters against the algorithm's config
        study = studies.load(study_name, storage)
        if args.show:
            _print_study(export.summarize(study, study_dir / "plots"), study_name, console)
        if args.export:
            path = export.export(study, args.export)
            console.print(f"best parameters -> {path}  (bench run --config {path} ...)", highlight=False)
        return 0
    if not (args.algo and args.env):
        raise ConfigError("bench tune: give --algo and --env to run a study")
    check_writable_folder(study_dir, "study folder")
    from bench.launch.resolve import oversubscription_warning, resolve_log, resolve_placement
    from bench.records.sinks import parse_log

    placement = resolve_placement(args.executor, args.profile, args.device, args.threads, args.workers,
                                  runs_per_task=1)  # a tuning worker is one task: never packed
    _warn(oversubscription_warning(placement), console)
    log = resolve_log(parse_log(args.log) if args.log is not None else None, placement)
    settings = tune_settings.from_request(
        algo=args.algo, envs=args.env, seeds=args.seeds, trials=args.trials, study=study_name, storage=storage,
        study_dir=study_dir, preset=args.preset, protocol=args.protocol, protocol_overrides=_protocol_flags(args), config_files=args.config,
        overrides=args.override, search=args.search, pruner=args.pruner, pruner_startup=args.pruner_startup,
        pruner_warmup=args.pruner_warmup, sampler_seed=args.sampler_seed, startup_trials=args.startup_trials,
        device=placement.device, torch_threads=placement.threads, plugins=plugins, argv=("bench", *argv), log=log)
    workers.check(settings)
    if placement.executor == "slurm":
        return workers.submit_slurm(settings, placement.workers, placement.profile, console)
    console.print(f"study {study_name!r}: {settings.trials} trials of {settings.algo} on {', '.join(settings.envs)} "
                  f"x {len(settings.seeds)} seed(s), {placement.workers} worker(s); storage {storage}; runs in "
                  f"{study_dir}", highlight=False, soft_wrap=True)
    counts = workers.run_local(settings, placement.workers)
    console.print("trials: " + ", ".join(f"{count} {state}" for state, count in sorted(counts.items())),
                  highlight=False)
    where = f" --storage {storage}" if args.storage else (f" --results-dir {args.results_dir}" if args.results_dir else "")
    console.print(f"next: bench tune --study {study_name}{where} --show   |   --export best.yaml", highlight=False)
    return 0


def _print_study(summary, study_name: str, console: Console) -> None:
    console.print("trials: " + ", ".join(f"{count} {state}" for state, count in sorted(summary.counts.items())),
                  highlight=False)
    best = Table(title=f"study {study_name}: best trials (objective: mean normalized final eval return)")
    for column in ("trial", "objective", "minutes", "parameters"):
        best.add_column(column)
    for row in summary.best:
        params = ", ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
                           for key, value in row["params"].items())
        best.add_row(str(row["trial"]), f"{row['value']:.4f}", f"{row['seconds'] / 60:.1f}", params)
    console.print(best)
    if summary.importances:
        table = Table(title="parameter importances (PED-ANOVA, complete trials)")
        table.add_column("parameter")
        table.add_column("importance", justify="right")
        for name, value in summary.importances.items():
            table.add_row(name, f"{value:.3f}")
        console.print(table)
    else:
        console.print(f"parameter importances: not available ({summary.importance_note})", highlight=False)
    console.print("plots: " + ", ".join(map(str, summary.plots)), highlight=False, soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
