"""`bench tune`: real Optuna studies (SQLite files in tmp_path) whose trials are tiny Pendulum runs."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from algorithms.config import ConfigError
from bench.jobs import RunDir
from bench.records.state import run_status
from bench.tune import export, objective, settings as tune_settings, study as studies, workers
from tests.helpers import plan_jobs
from bench.tune.search_space import load_search_space
from tests.helpers import ROOT, TESTS_DIR, TINY, bench_cli, bench_env

TINY_PROTOCOL = {"total_steps": 300, "warmup_steps": 100, "eval_every": 100, "eval_episodes": 2, "log_every": 100}
TINY_AGENT = ("batch_size=32", "hidden=32,32")


@pytest.fixture
def plugins_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS_DIR / "plugins"))


def tiny_settings(tmp_path: Path, algo: str, search: dict, trials: int, **options) -> tune_settings.TuneSettings:
    search_file = tmp_path / f"{algo}.search.yaml"
    search_file.write_text(yaml.safe_dump(search))
    study_dir = tmp_path / "results" / "study"
    defaults = dict(algo=algo, envs=("Pendulum-v1",), seeds=(0,), trials=trials, study="study",
                    storage=studies.default_storage(study_dir), study_dir=str(study_dir), protocol="quick",
                    protocol_overrides=TINY_PROTOCOL, overrides=TINY_AGENT, search=str(search_file))
    return tune_settings.TuneSettings(**{**defaults, **options})


def test_unknown_search_key_is_a_clear_error(tmp_path):
    bad = tmp_path / "sac.yaml"
    bad.write_text("actor_lr: {low: 1.0e-4, high: 1.0e-3, log: true}\nactor_lrr: {low: 1.0e-4, high: 1.0e-3}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'actor_lrr' for algorithm 'sac' \(did you mean 'actor_lr'\?\); valid keys: .*actor_lr"):
        load_search_space("sac", bad)
    bad.write_text("tau: {low: 0.5, high: 2.0}\n")  # a bound outside the config's own validation
    with pytest.raises(ConfigError, match=r"sac.yaml: tau: 2.0 makes an invalid config \(.*tau must be in"):
        load_search_space("sac", bad)
    bad.write_text("init_alpha: {low: 0.1, high: 1.0, when: {autotune_alpha: false}}\n")
    with pytest.raises(ConfigError, match="'when' must map keys listed earlier"):
        load_search_space("sac", bad)


def test_several_envs_need_references_and_a_lone_env_without_one_is_scored_raw():
    with pytest.raises(ConfigError, match=r"averages normalized scores over Pendulum-v1, Reacher-v5, but Reacher-v5 "
                                          r"has no reference .* tune on Reacher-v5 alone") as error:
        objective.scorer("Reacher-v5", ("Pendulum-v1", "Reacher-v5"))
    assert "--normalize" not in str(error.value)  # a `bench report` option, not one of `bench tune`
    assert objective.scorer("Reacher-v5", ("Reacher-v5",))(-3.5) == -3.5
    assert objective.scorer("Pendulum-v1", ("Pendulum-v1", "Reacher-v5"))(-157.0) == pytest.approx(1.0)


@pytest.mark.parametrize("algo", ["sac", "sdac"])
def test_shipped_search_spaces_sample_valid_configs(algo):
    import algorithms

    space = load_search_space(algo)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(8):
        params = space.suggest(study.ask())
        algorithms.resolve_config(algo, "Pendulum-v1", params)
        seen |= set(params)
    assert {param.name for param in space.params if not param.when} <= seen


def test_pruner_stops_a_bad_configuration(tmp_path, plugins_on_path):
    settings = tiny_settings(tmp_path, "biased_sac", {"velocity_gain": {"choices": [0.0, 1.0]}}, trials=2,
                             plugins=("biased_agent",), pruner_startup=1, pruner_warmup=0)
    study = studies.open_study(settings)
    study.enqueue_trial({"velocity_gain": 0.0})
    study.enqueue_trial({"velocity_gain": 1.0})  # spins the pendulum: far below the first trial at step 0
    counts = workers.work(settings)
    assert counts == {"complete": 1, "pruned": 1}
    good, bad = study.get_trials()
    assert good.state == TrialState.COMPLETE and bad.state == TrialState.PRUNED
    (run_dir,) = map(Path, bad.user_attrs["runs"])
    assert run_status(run_dir).state == "pruned"
    assert len((run_dir / "eval.csv").read_text().splitlines()) == 2  # header + the step-0 evaluation
    assert not (run_dir / "replay").exists()
    job = tune_settings.expand_trial(settings, "trial-0001", {"velocity_gain": 1.0})[0]
    from bench.train.run import run_one

    assert run_one(job)["status"] == "pruned"  # never resumed as if interrupted

    best = export.export(study, tmp_path / "best.yaml")
    (exported,) = plan_jobs(["biased_sac"], ["Pendulum"], [0], suite="check", config_files=[best],
                               results_root=tmp_path)
    assert exported.agent_config["velocity_gain"] == 0.0


def test_a_diverging_trial_is_pruned(tmp_path, plugins_on_path):
    """(On the journal-file storage, the one for clusters.)"""
    settings = tiny_settings(tmp_path, "nan_sac", {"tau": {"low": 0.004, "high": 0.006}}, trials=1,
                             plugins=("nan_agent",), pruner="none", storage=f"journal:{tmp_path / 'study.journal'}")
    assert workers.work(settings) == {"pruned": 1}
    (trial,) = studies.load("study", settings.storage).get_trials()
    (run_dir,) = map(Path, trial.user_attrs["runs"])
    assert "NonFiniteMetric" in (run_dir / RunDir.ERROR).read_text()


def test_slurm_workers_refuse_a_shared_sqlite_file(tmp_path, results_dir):
    profile = ROOT / "sweeps" / "profiles" / "local-cluster.yaml"
    result = bench_cli("tune", "--algo", "sac", "--env", "Pendulum", "--executor", "slurm", "--profile", str(profile),
                       "--results-dir", str(results_dir), results_dir=results_dir)
    assert result.returncode == 2
    assert "SQLite file must not be shared" in result.stderr
    assert not (results_dir / "sac-Pendulum").exists()  # refused before anything was created


def test_workers_share_one_sqlite_study_and_survive_a_killed_one(tmp_path, results_dir, plugins_on_path):
    """A worker is SIGKILLed mid-trial; then two local workers on the same SQLite file fail its orphaned trial and
    make exactly --trials trials between them. --show and --export read the study; the exported file is a valid
    `bench run --config` file."""
    args = ["tune", "--algo", "slow_sac", "--env", "Pendulum", "--trials", "3", "--study", "shared", "--pruner", "none",
            "--search", str(ROOT / "algorithms" / "configs" / "search" / "sac.yaml"),
            "--plugin", "slow_agent", *TINY, "--steps", "200", "--results-dir", str(results_dir)]
    killed = subprocess.Popen([sys.executable, "-m", "bench.cli", *args], env=bench_env(results_dir),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    train_log = results_dir / "shared" / "trial-0000" / "slow_sac" / "Pendulum-v1" / "seed=0" / "train.csv"
    deadline = time.time() + 120
    while not train_log.exists() and time.time() < deadline:
        time.sleep(0.1)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert train_log.exists() and not (train_log.parent / RunDir.DONE_MARKER).exists()

    # In a subprocess, as users run it: the workers are spawned processes, kept out of pytest's own process.
    result = bench_cli(*args, "--workers", "2", results_dir=results_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    study = studies.load("shared", studies.default_storage(results_dir / "shared"))
    orphan, *others = study.get_trials()
    assert orphan.state == TrialState.FAIL
    trials = [trial for trial in others if trial.state == TrialState.COMPLETE]
    assert len(trials) == 3  # the cap: exactly --trials trials ran to completion
    # A worker that asks for a trial just as the cap fills records it as FAIL without running it (a race the cap
    # resolves by trial number); nothing is left RUNNING.
    assert all(trial.state in (TrialState.COMPLETE, TrialState.FAIL) for trial in others)
    assert all("runs" not in trial.user_attrs for trial in others if trial.state == TrialState.FAIL)
    # The new workers did the trials, not the killed one; which of the two took how many of the 3 short trials
    # depends on how fast each spawned process started (on a loaded machine one can take all three).
    worker_pids = {trial.user_attrs["worker"]["pid"] for trial in trials}
    assert killed.pid not in worker_pids and len(worker_pids) <= 2
    for trial in trials:
        (run_dir,) = map(Path, trial.user_attrs["runs"])
        assert run_dir.parents[2].name == f"trial-{trial.number:04d}"
        assert run_status(run_dir).state == "done"

    best = tmp_path / "best.yaml"
    result = bench_cli("tune", "--study", "shared", "--results-dir", str(results_dir), "--show", "--export", str(best),
                       "--plugin", "slow_agent",
                       results_dir=results_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"trial {study.best_trial.number}," in best.read_text()
    for name in ("history", "slice", "intermediate", "importances"):
        assert (results_dir / "shared" / "plots" / f"{name}.png").stat().st_size > 0
    (job,) = plan_jobs(["slow_sac"], ["Pendulum"], [0], suite="check", config_files=[best], results_root=tmp_path,
                          plugins=["slow_agent"])
    for key, value in study.best_trial.params.items():
        assert job.agent_config[key] == (yaml.safe_load(value) if key == "hidden" else value)  # JSON text of a list


def test_evaluations_before_any_update_never_prune_by_default(tmp_path):
    settings = tiny_settings(tmp_path, "sac", {"tau": {"low": 0.004, "high": 0.006}}, trials=1)
    assert tune_settings.eval_counts(settings) == (4, 2)  # steps 0, 100, 200, 300; warm-up ends at 100
    pruner = studies.make_pruner(settings, reports_per_trial=4, warmup_reports=2)
    assert pruner._n_warmup_steps == 2
    assert studies.make_pruner(tune_settings.TuneSettings(**{**settings.__dict__, "pruner_warmup": 0}), 4, 2)._n_warmup_steps == 0


def test_startup_trials_default_to_a_third_of_the_study_and_zero_is_kept():
    from bench.tune.settings import resolve_startup_trials as startup_trials

    assert [startup_trials(None, trials) for trials in (3, 30, 300)] == [2, 10, 10]
    assert startup_trials(0, 30) == 0   # `--startup-trials 0` once fell back to the default
    with pytest.raises(ConfigError, match="-1"):
        startup_trials(-1, 30)


def test_a_studys_trials_are_planned_under_its_preset(tmp_path):
    """bench tune --preset: every trial's runs carry the preset's layer under the sampled values, and the preset is
    part of what makes two launches the same study."""
    paper = tiny_settings(tmp_path, "sac", {"tau": {"type": "float", "low": 0.001, "high": 0.02}}, trials=1,
                          preset="sdac-paper")
    (job,) = tune_settings.expand_trial(paper, "trial-0000", {"tau": 0.01})
    assert job.preset == "sdac-paper" and job.agent_config["activation"] == "gelu" and job.agent_config["tau"] == 0.01
    own = tune_settings.expand_trial(dataclasses.replace(paper, preset="standard"), "trial-0000", {"tau": 0.01})[0]
    assert own.agent_config["activation"] == "relu" and own.protocol == job.protocol  # --protocol quick given
    assert paper.identity() != dataclasses.replace(paper, preset="standard").identity()
