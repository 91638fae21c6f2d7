"""The objective of a trial: sample a configuration, train its runs one after the other with run_one, report
each evaluation's mean normalised score to the pruner, return the mean normalised final score."""

from __future__ import annotations

import math
import os
import socket
from typing import Sequence

import optuna

from algorithms.config import ConfigError
from bench.jobs import Outcome
from bench.plan.expand import find_conflicts
from bench.report.references import normalization_table
from bench.tune.search_space import SearchSpace
from bench.tune.settings import TuneSettings, expand_trial
from bench.tune.study import COUNTED


class TrialRunFailed(RuntimeError):
    """A run of the trial failed for another reason than divergence: the trial fails, the study goes on."""


class OverCap(RuntimeError):
    """The trial was created after the cap was filled (a race between workers): it fails unrun, uncounted."""


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
        conflicts = find_conflicts(jobs)
        if conflicts:  # e.g. a study deleted and started again over the old trials' folders
            raise TrialRunFailed("run folders of another configuration are in the way: " + "; ".join(conflicts))
        trial.set_user_attr("runs", [job.run_dir for job in jobs])
        from bench.train.run import run_one  # torch loads here, in the worker

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
            if status == Outcome.PRUNED:
                raise optuna.TrialPruned(f"{job.name}: {summary.get('detail', 'pruned')}")
            if status == Outcome.FAILED and str(summary.get("error", "")).startswith("NonFiniteMetric"):
                raise optuna.TrialPruned(f"{job.name} diverged: {summary['error']}")
            if status == Outcome.INTERRUPTED:
                trial.study.stop()
                raise TrialRunFailed(f"{job.name} was interrupted (stop signal): stopping this worker")
            if status not in (Outcome.DONE, Outcome.SKIPPED):
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
