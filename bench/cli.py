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
from algorithms.config import ConfigError  # noqa: I001  (torch loads on first use, see algorithms/__init__)
from bench import records, spec
from bench.protocols import DEFAULT_PROTOCOL, available_protocols, load_protocol
from bench.spec import EXECUTORS

PROTOCOL_FLAGS = {  # flag attribute -> Protocol field
    "steps": "total_steps", "eval_every": "eval_every", "eval_episodes": "eval_episodes",
    "warmup": "warmup_steps", "n_envs": "n_envs", "utd": "utd", "env_version": "env_version",
}
PLUGIN_ENV_VAR = "BENCH_PLUGINS"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Seeded sweeps of online RL algorithms.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="expand a sweep spec, or algos x envs x seeds, into runs and execute, "
                                          "resume or submit them")
    run.add_argument("spec", nargs="?", type=Path, help="sweep spec YAML (sweeps/*.yaml); or give --algos and --envs")
    _grid_arguments(run)
    run.add_argument("--eval-every", type=int, help="env steps between evaluations")
    run.add_argument("--eval-episodes", type=int, help="episodes per evaluation")
    run.add_argument("--warmup", type=int, help="uniform-random warm-up env steps")
    run.add_argument("--n-envs", type=int, help="parallel training envs")
    run.add_argument("--utd", type=float, help="gradient updates per env step")
    run.add_argument("--config", action="append", default=[], type=Path, metavar="FILE",
                     help="YAML overrides: sections named by algorithm or 'protocol' (applied before -o); repeatable")
    run.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                     help="config override: key=v (all algos), <algo>.key=v, protocol.key=v; repeatable")
    run.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                     help="parallel runs of the local executor (default: cores)")
    run.add_argument("--threads", type=int, help="torch threads per run (default: cores / workers; "
                                                  "--executor slurm: the profile's cpus_per_task)")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s: cuda if "
                                                      "available; --executor slurm: cuda if the profile has GPUs)")
    run.add_argument("--checkpoint-every", type=int,
                     help="env steps between checkpoints (default: 5%% of the budget; 0: never)")
    run.add_argument("--overwrite", action="store_true",
                     help="discard existing records of the selected runs and start them over")
    run.add_argument("--dry-run", action="store_true", help="print the runs and exit without writing anything")
    run.add_argument("--executor", choices=EXECUTORS,
                     help="local: process pool here (default); slurm: submit job arrays and exit; "
                          "debug: submitit's in-process executor")
    run.add_argument("--profile", type=Path, metavar="FILE",
                     help="cluster profile YAML for --executor slurm (see sweeps/profiles/)")

    status = commands.add_parser("status", help="state of runs, read from their directories (+ SLURM queue state)")
    status.add_argument("path", nargs="?", type=Path, help="results root, suite folder, run folder or sweep spec")
    _grid_arguments(status)

    _plugin_argument(commands.add_parser("list", help="show algorithms, environments and protocols"))
    _report_parsers(commands)

    from bench import probe
    probe.add_arguments(commands.add_parser(
        "probe", help="draw action samples and episodes of agents trained on the MultiGoal2D-v0 probe"))
    _tune_parser(commands)
    return parser


GRID_DEFAULTS = {"seeds": "1", "suite": "default", "protocol": DEFAULT_PROTOCOL}


def _grid_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that name a set of runs; shared by `run` and `status`. Defaults are applied in _grid_spec, so
    that flags given next to a sweep spec can be told apart from defaults."""
    parser.add_argument("--algos", help="comma-separated algorithm names (see `bench list`)")
    parser.add_argument("--envs", help="comma-separated env short names or Gymnasium ids")
    parser.add_argument("--seeds", help="count (10 -> 0..9), list (3,5,7) or range (0-4) (default: 1)")
    parser.add_argument("--suite", help="results/<suite>/... (default: default; with a spec: its name)")
    parser.add_argument("--protocol", help=f"protocol name or YAML path (default: {DEFAULT_PROTOCOL})")
    parser.add_argument("--steps", type=int, help="total env steps (protocol total_steps)")
    parser.add_argument("--env-version", help="version for short env names, e.g. v4")
    parser.add_argument("--results-dir", type=Path,
                        help=f"results root (default: ${records.RESULTS_ENV_VAR} or ./results)")
    _plugin_argument(parser)


def _plugin_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help=f"import MODULE (a module name or a path to a .py file) to register extra algorithms; "
                             f"repeatable; also ${PLUGIN_ENV_VAR}, comma-separated")


def _plugins(args: argparse.Namespace) -> list[str]:
    """--plugin entries, then those of $BENCH_PLUGINS; file paths made absolute (the resolved sweep.yaml keeps them)."""
    from bench.sweep import is_plugin_file

    entries = [*args.plugin, *filter(None, (item.strip() for item in os.environ.get(PLUGIN_ENV_VAR, "").split(",")))]
    return [str(Path(entry).expanduser().resolve()) if is_plugin_file(entry) else entry for entry in entries]


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
        if args.command in ("collect", "report"):
            return command_report(args, console)
        if args.command == "probe":
            from bench import probe
            args.plugin = _plugins(args)  # with $BENCH_PLUGINS, as every command
            return probe.command(args, console)
        if args.command == "tune":
            return command_tune(args, argv, console)
        return command_list(args, console)
    except (ConfigError, FileNotFoundError) as error:
        Console(stderr=True).print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        return 2


def command_run(args: argparse.Namespace, argv: list[str], console: Console) -> int:
    from bench import profiles, sweep
    from bench.executors import make_executor

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    plugins = _plugins(args)
    sweep_spec = _grid_spec(args, config_files=args.config, plugins=plugins, command="bench run")
    # Next to a spec, --config files come after everything the spec sets (they are applied late in expand, -o last).
    cli_config_files = [path.resolve() for path in args.config] if args.spec is not None else []
    if args.spec is not None:
        sweep_spec.plugins += [name for name in plugins if name not in sweep_spec.plugins]
        if args.executor:
            sweep_spec.executor = args.executor
        if args.profile:
            sweep_spec.profile = str(args.profile.resolve())
    executor_name = sweep_spec.executor
    profile = None
    if executor_name == "slurm":
        if not sweep_spec.profile:
            raise ConfigError("--executor slurm needs a cluster profile: --profile FILE or 'profile:' in the sweep "
                              "spec (examples: sweeps/profiles/local-cluster.yaml, example-cluster.yaml)")
        profile = profiles.load_profile(sweep_spec.profile)
    results_root = args.results_dir or records.default_results_root()
    if executor_name == "slurm":
        # Tasks run in their code snapshot's directory, maybe on other nodes: run directories must be absolute.
        # The device follows the profile's GPUs, not this (login) node's.
        results_root = results_root.resolve()
        device = profile.device if args.device == "auto" else args.device
        threads = args.threads or profile.cpus_per_task
    else:
        device = _device(args.device)
        threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    jobs = sweep_spec.expand(results_root=results_root, device=device, torch_threads=threads, argv=["bench", *argv],
                             cli_overrides=args.override, protocol_flags=_protocol_flags(args),
                             checkpoint_every=args.checkpoint_every, cli_config_files=cli_config_files)
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
    spec.save_resolved(sweep_spec, jobs, Path(jobs[0].run_dir).parents[2], cli_config_files)
    return make_executor(executor_name, workers=args.workers, profile=profile).launch(jobs, console)


def _grid_spec(args: argparse.Namespace, config_files: Sequence[Path], plugins: Sequence[str],
               command: str) -> "spec.SweepSpec":
    """The sweep named on the command line: a spec file, or the grid flags (two ways to the same job list)."""
    if args.spec is not None:
        given = [f"--{name}" for name in ("algos", "envs", "seeds", "protocol") if getattr(args, name) is not None]
        if given:
            raise ConfigError(f"{command} {args.spec}: {', '.join(given)} cannot be combined with a sweep spec "
                              "(the spec defines the grid; edit it or use the flag form)")
        sweep_spec = spec.load_spec(args.spec)
        if args.suite:
            sweep_spec.name = args.suite
        return sweep_spec
    if not (args.algos and args.envs):
        raise ConfigError(f"{command}: give a sweep spec (sweeps/*.yaml) or both --algos and --envs")
    return spec.from_flags(
        suite=args.suite or GRID_DEFAULTS["suite"], algos=args.algos, envs=args.envs,
        seeds=args.seeds or GRID_DEFAULTS["seeds"], protocol=args.protocol or GRID_DEFAULTS["protocol"],
        config_files=config_files, executor=getattr(args, "executor", None) or "local",
        profile=getattr(args, "profile", None), plugins=plugins,
    )


def _protocol_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {field: getattr(args, flag) for flag, field in PROTOCOL_FLAGS.items()
            if getattr(args, flag, None) is not None}


def command_status(args: argparse.Namespace, console: Console) -> int:
    from bench import status

    if args.path is not None and args.path.suffix in (".yaml", ".yml") or args.algos or args.envs:
        args.spec = args.path if args.path is not None and args.path.suffix in (".yaml", ".yml") else None
        from bench.sweep import load_plugins

        load_plugins(_plugins(args))  # a spec's own plugins are loaded by expand
        jobs = _grid_spec(args, config_files=[], plugins=[], command="bench status").expand(
            results_root=args.results_dir, protocol_flags=_protocol_flags(args))
        run_dirs = [Path(job.run_dir) for job in jobs]
    else:
        root = args.path or args.results_dir or records.default_results_root()
        if not root.exists():
            raise ConfigError(f"bench status: {str(root)!r} does not exist")
        run_dirs = status.find_run_dirs(root)
    rows = status.rows_for(run_dirs)
    console.print(_status_table(rows))
    console.print(_totals_table(status.totals(rows), status.STATES))
    return 0


def _status_table(rows: list) -> Table:
    table = Table(title=f"{len(rows)} runs")
    with_queue = any(row.queue for row in rows)
    for column in ("run", "state", "detail", *(["SLURM queue"] if with_queue else [])):
        table.add_column(column)
    colours = {"done": "green", "pruned": "magenta", "running": "cyan", "interrupted": "yellow", "failed": "red", "pending": "blue"}
    for row in rows:
        colour = colours.get(row.state)
        table.add_row(row.name, f"[{colour}]{row.state}[/]" if colour else row.state, row.detail,
                      *([row.queue] if with_queue else []))
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
        action = {"done": "skip (DONE)", "pruned": "skip (pruned by a tuning trial)", "not started": "run", "interrupted": "resume",
                  "failed": "resume (failed before)", "running": "leave (running)"}[state]
        table.add_row(job.name, action, job.run_dir)
    return table


def command_list(args: argparse.Namespace, console: Console) -> int:
    from bench.envs import SHORT_NAMES
    from bench.sweep import load_plugins

    load_plugins(_plugins(args))

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



def _report_parsers(commands) -> None:
    collect = commands.add_parser("collect", help="gather run records into tidy Parquet tables (evals, runs)")
    collect.add_argument("paths", nargs="+", type=Path, help="suite folders (or results roots, or run folders)")
    collect.add_argument("--out", type=Path, help="folder for evals.parquet and runs.parquet (default: <suite>/report)")

    report = commands.add_parser("report", help="rliable statistics, figures and tables from run records")
    report.add_argument("paths", nargs="+", type=Path, help="suite folders (or results roots, or run folders)")
    report.add_argument("--out", type=Path, help="output folder (default: <suite>/report)")
    report.add_argument("--normalize", default="table", help="table (shipped reference returns, default), "
                        "minmax (over the compared runs) or none")
    report.add_argument("--reps", type=int, help="bootstrap replications (default: draft setting)")
    report.add_argument("--final", action="store_true", help="publication setting for bootstrap replications")
    report.add_argument("--bootstrap-seed", type=int, default=0, help="seed of every bootstrap (default: %(default)s)")
    report.add_argument("--points", type=int, default=20, help="grid points of interpolated curves (default: %(default)s)")
    report.add_argument("--include-incomplete", action="store_true",
                        help="use unfinished runs' last evaluation in aggregates and tables (default: left out)")
    report.add_argument("--table-error", default="ci", help="ci (95%% Student t, default) or std")


def command_report(args: argparse.Namespace, console: Console) -> int:
    """`bench collect` and `bench report`: both read the run directories; collect stops at the Parquet tables."""
    import matplotlib

    matplotlib.use("Agg")  # written headless (SLURM nodes, CI); bench.plots leaves the backend to notebooks
    from bench import collect as collecting, report as reporting  # heavy imports (matplotlib, rliable) only here

    out = args.out or reporting.default_output(args.paths)
    if args.command == "collect":
        collected = collecting.collect(args.paths)
        _print_skipped(collected.skipped, console)
        paths = collected.save(out)
        console.print(f"{len(collected.runs)} runs, {len(collected.evals)} evaluation rows -> "
                      + ", ".join(map(str, paths)), highlight=False, soft_wrap=True)
        return 0
    if args.reps is not None and args.final:
        raise ConfigError("give either --reps or --final, not both")
    reps = reporting.FINAL_REPS if args.final else (reporting.DRAFT_REPS if args.reps is None else args.reps)
    options = reporting.ReportOptions(normalize=args.normalize, reps=reps, bootstrap_seed=args.bootstrap_seed,
                                      points=args.points, include_incomplete=args.include_incomplete,
                                      table_error=args.table_error)
    with console.status(f"reporting on {', '.join(map(str, args.paths))} ({reps} bootstrap replications)"):
        report = reporting.make_report(args.paths, out, options)
    _print_skipped(report.skipped, console)
    for note in report.notes:
        console.print(f"[dim]note:[/] {note}", highlight=False, soft_wrap=True)
    console.print(f"report: {report.markdown}  ({len(report.files)} files in {report.seconds:.1f} s)",
                  highlight=False, soft_wrap=True)
    return 0


def _print_skipped(skipped: list[str], console: Console) -> None:
    for reason in skipped:
        console.print(f"[yellow]warning:[/] skipped unreadable run: {reason}", highlight=False, soft_wrap=True)


def _tune_parser(commands) -> None:
    tune = commands.add_parser("tune", help="Optuna study over an algorithm's search space; trials are ordinary runs")
    tune.add_argument("--algo", help="algorithm to tune (search space: algorithms/configs/search/<algo>.yaml)")
    tune.add_argument("--env", action="append", default=[], help="environment (repeatable: the objective averages "
                      "normalized scores over envs)")
    tune.add_argument("--trials", type=int, default=20, help="trials in the study, over all workers (default: 20)")
    tune.add_argument("--seeds", default="1", help="seeds per trial: count, list or range (default: 1)")
    tune.add_argument("--study", help="study name and folder <results>/<study>/ (default: <algo>-<env ids>)")
    tune.add_argument("--storage", help="Optuna storage: sqlite:///file.db (default: <results>/<study>/study.db; "
                      "one machine only), journal:/shared/path/study.journal or postgresql://... (clusters)")
    tune.add_argument("--search", type=Path, metavar="FILE", help="search space YAML (default: the algorithm's)")
    tune.add_argument("--pruner", default="median", help="median (default), hyperband or none")
    tune.add_argument("--pruner-startup", type=int, default=3,
                      help="finished trials before the median pruner prunes (default: %(default)s)")
    tune.add_argument("--pruner-warmup", type=int, help="evaluations of a trial before it can be pruned "
                      "(default: those up to the end of warm-up, which only score the untrained network)")
    tune.add_argument("--startup-trials", type=int,
                      help="random trials before TPE takes over (default: trials/3, between 2 and 10)")
    tune.add_argument("--sampler-seed", type=int, default=0, help="TPE seed; worker k uses seed+k (default: 0)")
    tune.add_argument("--workers", type=int, default=1, help="parallel workers on the study (default: 1)")
    tune.add_argument("--threads", type=int, help="torch threads per worker (default: cores / workers)")
    tune.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    tune.add_argument("--executor", choices=("local", "slurm"), default="local",
                      help="local: worker processes here (default); slurm: a worker array, submit and exit")
    tune.add_argument("--profile", type=Path, metavar="FILE", help="cluster profile YAML for --executor slurm")
    tune.add_argument("--protocol", default=DEFAULT_PROTOCOL, help=f"protocol (default: {DEFAULT_PROTOCOL})")
    tune.add_argument("--steps", type=int, help="env steps per run")
    tune.add_argument("--eval-every", type=int, help="env steps between evaluations (= between pruning decisions)")
    tune.add_argument("--eval-episodes", type=int, help="episodes per evaluation")
    tune.add_argument("--warmup", type=int, help="uniform-random warm-up env steps")
    tune.add_argument("--env-version", help="version for short env names, e.g. v4")
    tune.add_argument("--config", action="append", default=[], type=Path, metavar="FILE",
                      help="YAML overrides applied under every trial's sampled values (as in bench run)")
    tune.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                      help="fixed config override for every trial (as in bench run); a searched key is overridden too")
    _plugin_argument(tune)
    tune.add_argument("--results-dir", type=Path, help=f"results root (default: ${records.RESULTS_ENV_VAR} or ./results)")
    tune.add_argument("--show", action="store_true", help="print best trials and importances, save plots; run nothing")
    tune.add_argument("--export", type=Path, metavar="FILE",
                      help="write the best parameters as a `bench run --config` file; run nothing")


def command_tune(args: argparse.Namespace, argv: list[str], console: Console) -> int:
    from bench import tune

    results_root = (args.results_dir or records.default_results_root()).resolve()
    study_name = args.study
    if study_name is None:
        if not (args.algo and args.env):
            raise ConfigError("bench tune: give --algo and --env (or --study NAME with --show / --export)")
        study_name = tune.default_study_name(args.algo, args.env)
    study_dir = results_root / study_name
    storage = args.storage or tune.default_storage(study_dir)
    from bench.sweep import load_plugins, parse_seeds

    plugins = load_plugins(_plugins(args))  # module names: what spawned workers and SLURM tasks import
    if args.show or args.export:  # the export validates the best parameters against the algorithm's config
        study = tune.load(study_name, storage)
        if args.show:
            _print_study(tune.summarize(study, study_dir / "plots"), study_name, console)
        if args.export:
            path = tune.export(study, args.export)
            console.print(f"best parameters -> {path}  (bench run --config {path} ...)", highlight=False)
        return 0
    if not (args.algo and args.env):
        raise ConfigError("bench tune: give --algo and --env to run a study")
    for flag in ("trials", "workers", "pruner_startup"):
        if getattr(args, flag) < (0 if flag == "pruner_startup" else 1):
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    profile = None
    if args.executor == "slurm":
        from bench import profiles

        if args.profile is None:
            raise ConfigError("--executor slurm needs a cluster profile: --profile FILE (see sweeps/profiles/)")
        profile = profiles.load_profile(args.profile)
        device = profile.device if args.device == "auto" else args.device
        threads = args.threads or profile.cpus_per_task
    else:
        device = _device(args.device)
        threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    protocol_overrides = _protocol_flags(args)
    settings = tune.TuneSettings(
        algo=algorithms.get_algorithm(args.algo).name,
        envs=tune.resolve_envs(args.env, args.protocol, protocol_overrides), seeds=tuple(parse_seeds(args.seeds)),
        trials=args.trials, study=study_name, storage=storage, study_dir=str(study_dir), protocol=args.protocol,
        protocol_overrides=protocol_overrides, config_files=tuple(str(path.resolve()) for path in args.config),
        overrides=tuple(args.override), search=str(args.search.resolve()) if args.search else None,
        pruner=args.pruner, pruner_startup=args.pruner_startup, pruner_warmup=args.pruner_warmup,
        sampler_seed=args.sampler_seed,
        startup_trials=tune.startup_trials(args.startup_trials, args.trials),
        device=device, torch_threads=threads, plugins=tuple(plugins), argv=("bench", *argv))
    tune.check(settings)
    if args.executor == "slurm":
        return tune.submit_slurm(settings, args.workers, profile, console)
    console.print(f"study {study_name!r}: {settings.trials} trials of {settings.algo} on {', '.join(settings.envs)} "
                  f"x {len(settings.seeds)} seed(s), {args.workers} worker(s); storage {storage}; runs in {study_dir}",
                  highlight=False, soft_wrap=True)
    counts = tune.run_local(settings, args.workers)
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
