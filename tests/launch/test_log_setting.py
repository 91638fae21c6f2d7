"""Where --log comes from: the command line, else the sweep spec's `log:`, else the cluster profile's; `none` turns a
profile's sinks off; bad names fail with the valid choices; the runs carry the result."""

import pytest

from algorithms.config import ConfigError
from bench.launch.profiles import load_profile
from bench.launch.resolve import Placement, resolve_log
from bench.plan.spec import from_request, load_spec


def write(path, text):
    path.write_text(text)
    return path


def placement_with(profile):
    return Placement("slurm", profile, "cpu", 1, 1)


def test_command_line_then_spec_then_profile(tmp_path):
    profile = load_profile(write(tmp_path / "cluster.yaml", "cpus_per_task: 2\nlog: wandb\n"))
    assert profile.log == ("wandb",)
    spec_file = write(tmp_path / "spec.yaml", "name: s\nalgos: [sac]\nenvs: [Pendulum]\nlog: [tensorboard]\n")
    without_log = write(tmp_path / "plain.yaml", "name: s\nalgos: [sac]\nenvs: [Pendulum]\n")
    grid = dict(algos=None, envs=None, seeds=None, suite=None, protocol=None)
    assert load_spec(spec_file).log == ["tensorboard"] and load_spec(without_log).log is None
    assert resolve_log(from_request(spec_file, **grid).log, placement_with(profile)) == ("tensorboard",)
    assert resolve_log(from_request(without_log, **grid).log, placement_with(profile)) == ("wandb",)
    assert resolve_log(from_request(spec_file, **grid, log="wandb,tensorboard").log,
                       placement_with(profile)) == ("wandb", "tensorboard")
    assert resolve_log(from_request(without_log, **grid, log="none").log, placement_with(profile)) == ()
    assert resolve_log(from_request(without_log, **grid).log, Placement("local", None, "cpu", 1, 1)) == ()


def test_the_runs_carry_the_sinks_in_their_recorded_config(tmp_path):
    spec = load_spec(write(tmp_path / "spec.yaml", "name: s\nalgos: [sac]\nenvs: [Pendulum]\npreset: none\n"
                                                   "log: tensorboard\n"))
    from bench.plan.expand import Execution

    job = spec.expand(tmp_path, execution=Execution(log=tuple(spec.log)))[0]
    assert job.log == ("tensorboard",) and job.resolved_config()["execution"]["log"] == ["tensorboard"]


@pytest.mark.parametrize("where, text, message", [
    ("spec.yaml", "name: s\nalgos: [sac]\nenvs: [Pendulum]\nlog: [tensorboard, mlflow]\n",
     "'log': unknown sink 'mlflow'; valid choices: tensorboard, wandb, none"),
    ("cluster.yaml", "log: [wandbb]\n", "'log': unknown sink 'wandbb'; valid choices: tensorboard, wandb, none"),
])
def test_unknown_sinks_in_files_name_the_valid_choices(tmp_path, where, text, message):
    path = write(tmp_path / where, text)
    with pytest.raises(ConfigError, match=message):
        (load_spec if where == "spec.yaml" else load_profile)(path)


def test_tuning_trials_carry_the_sinks(tmp_path):
    from bench.tune.settings import TuneSettings, expand_trial
    from tests.helpers import bench_cli

    settings = TuneSettings(algo="sac", envs=("Pendulum-v1",), seeds=(0,), trials=1, study="s", storage="x",
                            study_dir=str(tmp_path), preset="none", log=("wandb",))
    assert expand_trial(settings, "trial-0", {})[0].log == ("wandb",)
    bad = bench_cli("tune", "--algo", "sac", "--env", "Pendulum", "--log", "tb", results_dir=tmp_path)
    assert bad.returncode == 2 and "--log: unknown sink 'tb'; valid choices: tensorboard, wandb, none" in bad.stderr
