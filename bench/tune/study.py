"""The Optuna side of a study: storage, sampler, pruner, opening a study with its settings checked, and the
trials whose worker died."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path
from typing import Sequence

import optuna
from optuna.trial import TrialState

from algorithms.config import ConfigError
from bench.records.lock import pid_alive
from bench.tune.settings import TuneSettings, eval_counts

PRUNERS = ("median", "hyperband", "none")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # toward --trials (a FAIL is replaced)
STORAGE_FILE = "study.db"
SETTINGS_ATTR = "bench_settings"
HEARTBEAT_S = 60


def default_storage(study_dir: Path) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / STORAGE_FILE}"


def is_sqlite(storage: str) -> bool:
    return storage.startswith("sqlite:")


# URL schemes Optuna's RDB storage opens through SQLAlchemy (a driver may follow: postgresql+psycopg2://...).
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")


def check_storage_url(storage: str) -> None:
    """Refuse a storage URL whose scheme Optuna cannot open, before any trial starts."""
    if storage.startswith("journal:"):
        if not storage.removeprefix("journal:").strip():
            raise ConfigError(f"--storage {storage!r}: journal: needs a file path, e.g. journal:/shared/study.journal")
        return
    scheme = storage.split("://", 1)[0].split("+", 1)[0] if "://" in storage else None
    if scheme not in RDB_SCHEMES:
        raise ConfigError(f"--storage {storage!r}: unsupported; supported schemes: sqlite:///path/study.db, "
                          "postgresql://user:pass@host/db, mysql://user:pass@host/db, journal:/shared/path/study.journal")


def make_storage(storage: str) -> optuna.storages.BaseStorage:
    check_storage_url(storage)
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


def load(study_name: str, storage: str) -> optuna.Study:
    if is_sqlite(storage) and not Path(storage.split(":///", 1)[-1]).exists():
        raise ConfigError(f"no study storage at {storage} (give --study, --results-dir or --storage of a study)")
    try:
        return optuna.load_study(study_name=study_name, storage=make_storage(storage))
    except KeyError:
        names = optuna.get_all_study_names(make_storage(storage))
        raise ConfigError(f"no study {study_name!r} in {storage}; studies there: {', '.join(names) or 'none'}") from None


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """RUNNING trials whose worker process on this host is gone (killed mid-trial) become FAIL, so they stop
    counting toward the cap. Workers on other hosts are left to the storage's heartbeat."""
    dead = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker") or {}
        if owner.get("host") == socket.gethostname() and not pid_alive(int(owner.get("pid", -1))):
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
                continue  # another worker starting at the same moment failed it first
            dead.append(trial.number)
    return dead


def count(study: optuna.Study, states: Sequence[TrialState]) -> int:
    return len(study.get_trials(deepcopy=False, states=tuple(states)))


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts


