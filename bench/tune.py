"""`bench tune`: Optuna studies whose trials are ordinary runs.

A trial samples a configuration from the algorithm's search space (:mod:`bench.search_space`), expands it into
runs (envs x seeds) exactly like `bench run` does, and trains them one after the other with :func:`run_one` in
the worker's process. Its runs are recorded like any other under ``<results>/<study>/trial-<number>/``, so
`bench status` and `bench report <results>/<study>` read them. The objective is the mean normalized final
evaluation return over the trial's runs (score 0 = random policy, 1 = the reference table's SAC return; raw
return for a single env the table does not cover).

Pruning: after every evaluation the trial reports the mean score of the latest evaluation of each run it has
started; the step of a report is its evaluation count, the same in every trial of a study. A pruned run is
recorded with ``PRUNED`` and never resumed. A run that diverges (NaN loss or return) prunes its trial.

Storage (``--storage``): an SQLite file in the study folder by default, for workers on one machine. SQLite relies
on POSIX file locks, which network filesystems (NFS, Lustre) do not implement reliably: workers on several nodes
sharing one SQLite file can corrupt it or fail with "database is locked". On a cluster use the journal file
(``journal:/shared/path/study.journal``: append-only, its own lock file, safe on NFS) or an RDB server
(``postgresql://user:pass@host/db``).

Workers (``--workers K``) each run ``study.optimize`` until the study holds ``--trials`` trials that are
complete, pruned or running. A worker killed mid-trial leaves a RUNNING trial behind; the next worker to start
on that host marks it failed (its process is gone), and RDB storages also fail it through Optuna's heartbeat;
failed trials do not count toward the cap, so the study still reaches its number of trials.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import optuna
import yaml
from optuna.trial import TrialState

from algorithms.config import ConfigError
from bench import records, sweep
from bench.envs import resolve_env_id
from bench.protocols import DEFAULT_PROTOCOL, load_protocol
from bench.references import normalization_table
from bench.search_space import SearchSpace, load_search_space

PRUNERS = ("median", "hyperband", "none")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # toward --trials (a FAIL is replaced)
STORAGE_FILE = "study.db"
SETTINGS_ATTR = "bench_settings"
HEARTBEAT_S = 60
IMPORTANCE = optuna.importance.PedAnovaImportanceEvaluator  # Optuna 5's default: fast, no model to fit


@dataclass(frozen=True)
class TuneSettings:
    """Everything a worker needs (plain data: it crosses process and cluster boundaries)."""

    algo: str
    envs: tuple[str, ...]          # resolved env ids
    seeds: tuple[int, ...]
    trials: int
    study: str
    storage: str                   # URL, or journal:<path>
    study_dir: str                 # <results>/<study>: the trials' suites and the default storage
    protocol: str = DEFAULT_PROTOCOL
    protocol_overrides: dict[str, Any] = field(default_factory=dict)
    config_files: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    search: str | None = None
    pruner: str = "median"
    pruner_startup: int = 3        # trials finished before the median pruner prunes
    pruner_warmup: int | None = None  # reports before a trial can be pruned; None: up to the end of warm-up
    sampler_seed: int = 0
    startup_trials: int = 10       # random trials before TPE models the results
    device: str = "cpu"
    torch_threads: int = 1
    plugins: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()

    def identity(self) -> dict[str, Any]:
        """What makes two launches the same experiment (a study must not mix two)."""
        return {"algo": self.algo, "envs": list(self.envs), "seeds": list(self.seeds), "protocol": self.protocol,
                "protocol_overrides": dict(self.protocol_overrides), "overrides": list(self.overrides),
                "config_files": list(self.config_files), "search": self.search}


# Storage and study ---------------------------------------------------------------------------------
def default_storage(study_dir: Path) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / STORAGE_FILE}"


def is_sqlite(storage: str) -> bool:
    return storage.startswith("sqlite:")


def make_storage(storage: str) -> optuna.storages.BaseStorage:
    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(storage.removeprefix("journal:")).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" not in storage:
        raise ConfigError(f"--storage {storage!r}: give an RDB URL (sqlite:///path/study.db, "
                          "postgresql://user:pass@host/db) or journal:/shared/path/study.journal")
    engine_kwargs = None
    if is_sqlite(storage):
        Path(storage.split(":///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
        # Workers write at every report; wait for the lock instead of failing at SQLite's default 5 s.
        engine_kwargs = {"connect_args": {"timeout": 120}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat
        return optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                                          grace_period=3 * HEARTBEAT_S)


def make_sampler(settings: TuneSettings, worker: int = 0) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate, group, liar
        # Each worker its own seed: the same one would make parallel workers propose the same startup trials.
        return optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=settings.startup_trials,
                                          seed=settings.sampler_seed + worker)


def make_pruner(settings: TuneSettings, reports_per_trial: int, warmup_reports: int) -> optuna.pruners.BasePruner:
    warmup = warmup_reports if settings.pruner_warmup is None else settings.pruner_warmup
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.pruner_startup, n_warmup_steps=warmup)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup), max_resource=reports_per_trial)
    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner {settings.pruner!r}: valid choices: {', '.join(PRUNERS)}")


def open_study(settings: TuneSettings, worker: int = 0, create: bool = True) -> optuna.Study:
    """The study (created on first use), with its launch settings checked against the recorded ones."""
    evals, warmup_evals = eval_counts(settings)
    pruner = make_pruner(settings, len(settings.envs) * len(settings.seeds) * evals, warmup_evals)
    storage = make_storage(settings.storage)
    if create:
        study = optuna.create_study(study_name=settings.study, storage=storage, direction="maximize",
                                    sampler=make_sampler(settings, worker), pruner=pruner, load_if_exists=True)
    else:
        study = optuna.load_study(study_name=settings.study, storage=storage, sampler=make_sampler(settings, worker),
                                  pruner=pruner)
    recorded = study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:
        study.set_user_attr(SETTINGS_ATTR, settings.identity())
    elif recorded != settings.identity():
        changed = sorted(key for key in recorded if recorded[key] != settings.identity().get(key))
        raise ConfigError(f"study {settings.study!r} in {settings.storage} was started with other settings "
                          f"({', '.join(changed)} differ); use another --study or the same settings")
    return study


def eval_counts(settings: TuneSettings) -> tuple[int, int]:
    """Evaluations per run, and how many of them come before any update (at or before the end of warm-up): those
    score the initial random network, so pruning on them would judge a configuration before it learned."""
    from algorithms import config as cfg
    from bench.protocols import Protocol

    job = expand_trial(settings, "check", {})[0]
    protocol = cfg.build(Protocol, job.protocol, where="protocol")
    return len(protocol.eval_steps), sum(step <= protocol.warmup_steps for step in protocol.eval_steps)


def load(study_name: str, storage: str) -> optuna.Study:
    if is_sqlite(storage) and not Path(storage.split(":///", 1)[-1]).exists():
        raise ConfigError(f"no study storage at {storage} (give --study, --results-dir or --storage of a study)")
    try:
        return optuna.load_study(study_name=study_name, storage=make_storage(storage))
    except KeyError:
        names = optuna.get_all_study_names(make_storage(storage))
        raise ConfigError(f"no study {study_name!r} in {storage}; studies there: {', '.join(names) or 'none'}") from None


def default_study_name(algo: str, envs: Sequence[str]) -> str:
    return "-".join([algo, *(env.replace("/", "-") for env in envs)])


def startup_trials(requested: int | None, trials: int) -> int:
    """Random trials before TPE: as asked (0 allowed: TPE from the first trial), else a third of the study,
    2 to 10."""
    if requested is None:
        return max(2, min(10, trials // 3))
    if requested < 0:
        raise ConfigError(f"--startup-trials must be >= 0, got {requested}")
    return requested


def check(settings: TuneSettings) -> None:
    """Fail before any worker starts: the search space, a trial's runs (defaults), and a storage a cluster can use."""
    load_search_space(settings.algo, settings.search)
    expand_trial(settings, "check", {})
    if settings.pruner not in PRUNERS:
        raise ConfigError(f"--pruner {settings.pruner!r}: valid choices: {', '.join(PRUNERS)}")
    for env_id in settings.envs:
        scorer(env_id, settings.envs)


# The objective ---------------------------------------------------------------------------------------
class TrialRunFailed(RuntimeError):
    """A run of the trial failed for another reason than divergence: the trial fails, the study goes on."""


class OverCap(RuntimeError):
    """The trial was created after the cap was filled (a race between workers): it fails unrun, uncounted."""


def expand_trial(settings: TuneSettings, suite: str, params: dict[str, Any]) -> list[sweep.JobSpec]:
    """The runs of one trial, resolved and validated exactly as `bench run` would."""
    s = settings
    return sweep.expand([s.algo], s.envs, s.seeds, suite=suite, protocol=s.protocol,
                        protocol_overrides=s.protocol_overrides, overrides=s.overrides, results_root=s.study_dir,
                        device=s.device, torch_threads=s.torch_threads, argv=s.argv, plugins=s.plugins,
                        config_files=s.config_files, inline_overrides={s.algo: params})


class Objective:
    def __init__(self, settings: TuneSettings, space: SearchSpace) -> None:
        self.settings, self.space = settings, space
        self.scorers = {env_id: scorer(env_id, settings.envs) for env_id in settings.envs}

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        if _counted_before(trial) >= self.settings.trials:  # another worker filled the cap meanwhile
            trial.study.stop()
            trial.set_user_attr("over_cap", True)
            raise OverCap(f"trial {trial.number} is over the study's cap of {self.settings.trials}: not run")
        params = self.space.suggest(trial)
        jobs = expand_trial(self.settings, f"trial-{trial.number:04d}", params)
        conflicts = sweep.find_conflicts(jobs)
        if conflicts:  # e.g. a study deleted and started again over the old trials' folders
            raise TrialRunFailed("run folders of another configuration are in the way: " + "; ".join(conflicts))
        trial.set_user_attr("runs", [job.run_dir for job in jobs])
        from bench.run import run_one  # torch loads here, in the worker

        latest: dict[int, float] = {}
        finals: list[float] = []
        reports = 0

        for index, job in enumerate(jobs):
            score_of = self.scorers[job.env_id]

            def on_eval(step: int, eval_return: float, index: int = index, score_of=score_of) -> bool:
                nonlocal reports
                score = score_of(eval_return)
                if not math.isfinite(score):
                    return True
                latest[index] = score
                trial.report(sum(latest.values()) / len(latest), reports)
                reports += 1
                return trial.should_prune()

            summary = run_one(job, on_eval=on_eval)
            status = summary["status"]
            if status == "pruned":
                raise optuna.TrialPruned(f"{job.name}: {summary.get('detail', 'pruned')}")
            if status == "failed" and str(summary.get("error", "")).startswith("NonFiniteMetric"):
                raise optuna.TrialPruned(f"{job.name} diverged: {summary['error']}")
            if status == "interrupted":
                trial.study.stop()
                raise TrialRunFailed(f"{job.name} was interrupted (stop signal): stopping this worker")
            if status not in ("done", "skipped"):
                raise TrialRunFailed(f"{job.name} {status}: {summary.get('error', '')} (see {job.run_dir})")
            finals.append(score_of(summary["final_eval_return"]))
        value = sum(finals) / len(finals)
        if not math.isfinite(value):
            raise optuna.TrialPruned("non-finite objective")
        return value


def scorer(env_id: str, envs: Sequence[str]):
    """Return -> normalized score with the shipped reference table; the raw return for a lone env it lacks."""
    table = normalization_table()
    if env_id in table.envs:
        return table.for_env(env_id)
    if len(envs) > 1:  # scores of several envs are averaged, so they must share a scale
        raise ConfigError(f"the objective averages normalized scores over {', '.join(envs)}, but {env_id} has no "
                          f"reference in bench/data/normalization.yaml (version {table.version}; it covers "
                          f"{', '.join(sorted(table.envs))}): tune on {env_id} alone (its raw return is the "
                          f"objective) or add its row to the table")
    return lambda value: value


def _counted_before(trial: optuna.Trial) -> int:
    trials = trial.study.get_trials(deepcopy=False, states=COUNTED)
    return sum(other.number < trial.number for other in trials)


# Workers ---------------------------------------------------------------------------------------------
def work(settings: TuneSettings, worker: int = 0) -> dict[str, int]:
    """One worker: run trials until the study holds ``settings.trials`` counted trials. Returns state counts."""
    sweep.load_plugins(settings.plugins)
    space = load_search_space(settings.algo, settings.search)
    study = open_study(settings, worker)
    fail_dead_trials(study)
    if _count(study, COUNTED) < settings.trials:
        study.optimize(Objective(settings, space), catch=(TrialRunFailed, OverCap), gc_after_trial=True,
                       callbacks=[optuna.study.MaxTrialsCallback(settings.trials, states=COUNTED)])
    return state_counts(study)


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """RUNNING trials whose worker process on this host is gone (killed mid-trial) become FAIL, so they stop
    counting toward the cap. Workers on other hosts are left to the storage's heartbeat."""
    dead = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker") or {}
        if owner.get("host") == socket.gethostname() and not records._pid_alive(int(owner.get("pid", -1))):
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
                continue  # another worker starting at the same moment failed it first
            dead.append(trial.number)
    return dead


def _count(study: optuna.Study, states: Sequence[TrialState]) -> int:
    return len(study.get_trials(deepcopy=False, states=tuple(states)))


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts


def run_local(settings: TuneSettings, workers: int) -> dict[str, int]:
    """``workers`` processes on this machine on one study (one worker: this process). Separate processes rather
    than a pool: a pool breaks as a whole when one worker dies, and a worker killed mid-trial must leave the
    others working. All of them are spawned, so they start together and share the first trials."""
    fail_dead_trials(open_study(settings))  # create it (and check the settings) once, before workers race to
    if workers == 1:
        return work(settings)
    context = mp.get_context("spawn")
    processes = [context.Process(target=work, args=(settings, index), name=f"tune-worker-{index}")
                 for index in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    died = [f"{process.name} (exit code {process.exitcode})" for process in processes if process.exitcode]
    if died:
        print(f"warning: {', '.join(died)} stopped early; a trial it was running is failed by the next worker "
              "to start on this host")
    return state_counts(open_study(settings, create=False))


class TuneWorker:
    """A SLURM array task: one worker on the shared study (a thin callable around :func:`work`)."""

    def __call__(self, settings: TuneSettings, worker: int) -> dict[str, int]:
        return work(settings, worker)


def submit_slurm(settings: TuneSettings, workers: int, profile: Any, console: Any) -> int:
    import time

    from bench import slurm

    if is_sqlite(settings.storage):
        raise ConfigError("--executor slurm: an SQLite file must not be shared by workers on several nodes (its "
                          "file locks are unreliable on network filesystems); use --storage "
                          "journal:/shared/path/study.journal or postgresql://...")
    open_study(settings)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{os.getpid()}"
    folder = Path(settings.study_dir) / slurm.SLURM_DIR / stamp
    code_dir = slurm.snapshot_code(folder / "code", plugins=settings.plugins)
    executor = slurm.make_submitit_executor("slurm", folder / "logs", profile, code_dir)
    executor.update_parameters(name=slurm.job_name(profile, Path(settings.study_dir)))
    submitted = executor.map_array(TuneWorker(), [settings] * workers, list(range(workers)))
    console.print(f"submitted {workers} tuning worker(s) as array job {str(submitted[0].job_id).split('_')[0]}; "
                  f"logs: {folder / 'logs'}; follow with: bench tune --study {settings.study} "
                  f"--storage {settings.storage} --show")
    return 0


# Results ---------------------------------------------------------------------------------------------
def best_overrides(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """The best trial's parameters as a `bench run --config` file: ``{algo: {key: value}}``."""
    recorded = study.user_attrs.get(SETTINGS_ATTR) or {}
    algo = recorded.get("algo")
    if algo is None:
        raise ConfigError(f"study {study.study_name!r} was not made by `bench tune` (no recorded settings)")
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        raise ConfigError(f"study {study.study_name!r} has no complete trial yet: nothing to export")
    space = load_search_space(algo, recorded.get("search"))
    params = space.decode(study.best_trial.params)
    return {algo: {key: list(value) if isinstance(value, tuple) else value for key, value in params.items()}}


def export(study: optuna.Study, path: Path) -> Path:
    best = study.best_trial
    header = (f"# Best parameters of study {study.study_name!r}: trial {best.number}, objective {best.value:.4f}\n"
              f"# (written by `bench tune --export`; use with `bench run --config {path.name}`)\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(best_overrides(study), sort_keys=False))
    return path


@dataclass
class StudySummary:
    counts: dict[str, int]
    best: list[dict[str, Any]]
    importances: dict[str, float] | None
    importance_note: str
    plots: list[Path]


def summarize(study: optuna.Study, plots_dir: Path, top: int = 5) -> StudySummary:
    completed = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                       key=lambda trial: trial.value, reverse=True)
    best = [{"trial": trial.number, "value": trial.value, "params": trial.params,
             "seconds": (trial.datetime_complete - trial.datetime_start).total_seconds()} for trial in completed[:top]]
    importances, note = None, ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "few trials in a regime": the table says how many trials
        try:
            importances = (dict(optuna.importance.get_param_importances(study, evaluator=IMPORTANCE()))
                           if len(completed) >= 2 else None)
            note = "" if importances is not None else "needs at least 2 complete trials"
        except (RuntimeError, ValueError) as error:
            note = str(error)
        plots = save_plots(study, plots_dir, importances)
    return StudySummary(state_counts(study), best, importances, note, plots)


def save_plots(study: optuna.Study, plots_dir: Path, importances: dict[str, float] | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    plots_dir.mkdir(parents=True, exist_ok=True)
    makers = {"history": vis.plot_optimization_history, "intermediate": vis.plot_intermediate_values}
    if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        makers["slice"] = vis.plot_slice
    if importances:
        makers["importances"] = lambda study: vis.plot_param_importances(study, evaluator=IMPORTANCE())
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, maker in makers.items():
            axes = maker(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.savefig(plots_dir / f"{name}.png", dpi=110, bbox_inches="tight")
            plt.close(figure)
            written.append(plots_dir / f"{name}.png")
    return written


def resolve_envs(envs: Sequence[str], protocol: str, protocol_overrides: dict[str, Any]) -> tuple[str, ...]:
    version = load_protocol(protocol, protocol_overrides).env_version
    return tuple(resolve_env_id(env, version) for env in envs)
