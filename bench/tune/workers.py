"""Tuning workers: each runs trials until the study holds its number of trials; several on this machine
(separate processes) or as a SLURM array through the one submission path of bench.launch.slurm."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import optuna

from algorithms.config import ConfigError
from bench.plugins import load_plugins
from bench.tune.objective import Objective, OverCap, TrialRunFailed, scorer
from bench.tune.search_space import load_search_space
from bench.tune.settings import TuneSettings, expand_trial
from bench.tune.study import COUNTED, PRUNERS, count, fail_dead_trials, is_sqlite, open_study, state_counts


def check(settings: TuneSettings) -> None:
    """Fail before any worker starts: the search space, a trial's runs (defaults), and a storage a cluster can use."""
    load_search_space(settings.algo, settings.search)
    expand_trial(settings, "check", {})
    if settings.pruner not in PRUNERS:
        raise ConfigError(f"--pruner {settings.pruner!r}: valid choices: {', '.join(PRUNERS)}")
    for env_id in settings.envs:
        scorer(env_id, settings.envs)


def work(settings: TuneSettings, worker: int = 0) -> dict[str, int]:
    """One worker: run trials until the study holds ``settings.trials`` counted trials. Returns state counts."""
    load_plugins(settings.plugins)
    space = load_search_space(settings.algo, settings.search)
    study = open_study(settings, worker)
    fail_dead_trials(study)
    if count(study, COUNTED) < settings.trials:
        study.optimize(Objective(settings, space), catch=(TrialRunFailed, OverCap), gc_after_trial=True,
                       callbacks=[optuna.study.MaxTrialsCallback(settings.trials, states=COUNTED)])
    return state_counts(study)


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
    from bench.launch import slurm

    if is_sqlite(settings.storage):
        raise ConfigError("--executor slurm: an SQLite file must not be shared by workers on several nodes (its "
                          "file locks are unreliable on network filesystems); use --storage "
                          "journal:/shared/path/study.journal or postgresql://...")
    open_study(settings)
    submission = slurm.submit_array(TuneWorker(), [(settings, index) for index in range(workers)],
                                    Path(settings.study_dir), profile, settings.plugins)
    console.print(f"submitted {len(submission.task_ids)} tuning worker(s) as array job {submission.arrays[0]}; "
                  f"logs: {submission.logs}; follow with: bench tune --study {settings.study} "
                  f"--storage {settings.storage} --show")
    return 0 if submission.error is None else 1
