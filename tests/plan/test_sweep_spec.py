"""Sweep specs: the shipped ones load and expand, a spec and the flag form make the same job list, overrides
layer in the documented order, and bad specs fail with the valid choices."""

import dataclasses

import pytest
import yaml

import algorithms
from algorithms.config import ConfigError
from bench.plan import layers, spec
from bench.launch.profiles import load_profile
from tests.helpers import ROOT, bench_cli

SPECS = sorted((ROOT / "sweeps").glob("*.yaml"))
PROFILES = sorted((ROOT / "sweeps" / "profiles").glob("*.yaml"))


def without_argv(jobs):
    return [dataclasses.replace(job, argv=()) for job in jobs]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_shipped_sweep_specs_expand(path, tmp_path):
    """Every sweeps/*.yaml loads and expands, with every algorithm it names registered."""
    sweep = spec.load_spec(path)
    assert set(sweep.algos) <= set(algorithms.available_algorithms())
    jobs = sweep.expand(results_root=tmp_path)
    assert len(jobs) == len(sweep.algos) * len(sweep.envs) * len(sweep.seeds)
    if sweep.profile:
        load_profile(sweep.profile)


def test_sdac_paper_spec_is_the_paper_grid():
    sweep = spec.load_spec(ROOT / "sweeps" / "sdac_paper.yaml")
    assert sweep.algos == ["sac", "sdac", "dpmd", "dacer", "dacer2", "cpql"]
    assert sweep.envs == ["Ant", "Humanoid", "HalfCheetah", "Walker2d", "Hopper"]
    assert sweep.seeds == list(range(10)) and sweep.protocol == "sdac-paper" and sweep.executor == "slurm"
    jobs = dataclasses.replace(sweep, algos=["sac"]).expand(results_root="r")
    assert {job.env_id for job in jobs} == {"Ant-v4", "Humanoid-v4", "HalfCheetah-v4", "Walker2d-v4", "Hopper-v4"}
    assert jobs[0].protocol["total_steps"] == 1_000_000


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_shipped_profiles_load(path):
    profile = load_profile(path)
    params = profile.submitit_parameters()
    assert params["timeout_min"] >= 1 and params["cpus_per_task"] >= 1


def test_example_profile_maps_every_site_setting_to_submitit():
    params = load_profile(ROOT / "sweeps" / "profiles" / "example-cluster.yaml").submitit_parameters()
    assert params["slurm_partition"] == "gpu" and params["slurm_account"] == "my-project"
    assert params["slurm_qos"] == "normal" and params["gpus_per_node"] == 1
    assert params["slurm_additional_parameters"] == {"constraint": "a100"}


def test_spec_and_flag_form_make_the_same_job_list(tmp_path):
    from_spec = spec.load_spec(ROOT / "sweeps" / "smoke.yaml").expand(results_root=tmp_path)
    flags = spec.from_flags(
        suite="smoke", algos="sac,sdac", envs="Pendulum,InvertedPendulum", seeds="2", protocol="quick",
        executor="local", profile=None, plugins=[],
    ).expand(tmp_path, layers.from_command_line(
        [ROOT / "algorithms/configs/cpu-smoke.yaml", ROOT / "algorithms/configs/small-nets.yaml"],
        {"total_steps": 5000}, []))
    assert without_argv(from_spec) == without_argv(flags)
    assert len(from_spec) == 8 and from_spec[-1].agent_config["particles"] == 4  # cpu-smoke applied


def test_spec_and_flag_form_dry_runs_agree_through_the_cli(results_dir):
    by_spec = bench_cli("run", str(ROOT / "sweeps/smoke.yaml"), "--dry-run", results_dir=results_dir)
    by_flags = bench_cli("run", "--algos", "sac,sdac", "--envs", "Pendulum,InvertedPendulum", "--seeds", "2",
                         "--protocol", "quick", "--steps", "5000", "--config", str(ROOT / "algorithms/configs/cpu-smoke.yaml"),
                         "--config", str(ROOT / "algorithms/configs/small-nets.yaml"), "--suite", "smoke", "--dry-run",
                         results_dir=results_dir)
    assert by_spec.returncode == 0 and by_spec.stdout == by_flags.stdout and "8 runs" in by_spec.stdout


def test_override_layers_apply_in_order(tmp_path):
    """config files < inline overrides < env_overrides (that env only) < -o."""
    path = tmp_path / "layers.yaml"
    path.write_text(
        "name: layers\nalgos: [sac]\nenvs: [Pendulum, InvertedPendulum]\nseeds: [3]\nprotocol: quick\n"
        f"config: [{ROOT / 'algorithms/configs/small-nets.yaml'}]\n"
        "overrides: {sac: {tau: 0.01, batch_size: 64}, protocol: {total_steps: 2000}}\n"
        "env_overrides: {InvertedPendulum: {sac: {tau: 0.02}}}\n"
    )
    jobs = {job.env_id: job for job in spec.load_spec(path).expand(tmp_path, [layers.from_assignments(["batch_size=32"])])}
    assert jobs["Pendulum-v1"].agent_config["tau"] == 0.01 and jobs["InvertedPendulum-v5"].agent_config["tau"] == 0.02
    assert {job.agent_config["batch_size"] for job in jobs.values()} == {32}
    assert {job.protocol["total_steps"] for job in jobs.values()} == {2000} and jobs["Pendulum-v1"].seed == 3


def test_the_command_line_wins_over_the_spec(tmp_path, results_dir):
    """--config next to a spec comes after its overrides and env_overrides; protocol flags such as --steps come
    after every file (both used to lose: `bench run spec.yaml --steps 2000` ran the spec's 5000 steps)."""
    path = tmp_path / "layers.yaml"
    path.write_text(
        "name: layers\nalgos: [sac]\nenvs: [Pendulum, InvertedPendulum]\nseeds: [0]\nprotocol: quick\n"
        "overrides: {sac: {tau: 0.01}, protocol: {total_steps: 5000, eval_episodes: 3}}\n"
        "env_overrides: {InvertedPendulum: {sac: {tau: 0.02}}}\n")
    late = tmp_path / "late.yaml"
    late.write_text("sac: {tau: 0.03}\nprotocol: {eval_episodes: 4, total_steps: 4000}\n")
    jobs = spec.load_spec(path).expand(tmp_path, layers.from_command_line([late], {"total_steps": 2000}, []))
    assert {job.agent_config["tau"] for job in jobs} == {0.03}
    assert {(job.protocol["total_steps"], job.protocol["eval_episodes"]) for job in jobs} == {(2000, 4)}
    jobs = spec.load_spec(path).expand(tmp_path, layers.from_command_line([late], {}, ["sac.tau=0.04"]))
    assert {job.agent_config["tau"] for job in jobs} == {0.04}
    # The same through the CLI, one tiny real run; the resolved sweep.yaml records the command line's --config.
    done = bench_cli("run", str(path), "--config", str(late), "--steps", "200", "--warmup", "100", "--eval-every",
                     "100", "--eval-episodes", "1", "-o", "batch_size=32", "-o", "hidden=32,32", "--threads", "1",
                     "--workers", "2", results_dir=results_dir)
    assert done.returncode == 0, done.stderr
    run_config = yaml.safe_load((results_dir / "layers" / "sac" / "Pendulum-v1" / "seed=0" / "config.yaml").read_text())
    assert run_config["agent"]["tau"] == 0.03 and run_config["protocol"]["total_steps"] == 200
    assert yaml.safe_load((results_dir / "layers" / "sweep.yaml").read_text())["command_line_config"] == [str(late)]


@pytest.mark.parametrize("text,message", [
    ("name: x\nalgos: [sac]\nenvs: [Pendulum]\nworkerz: 2\n", "unknown key(s) 'workerz'; valid keys: name, algos"),
    ("algos: [sac]\nenvs: [Pendulum]\n", "missing required key(s) name"),
    ("name: x\nalgos: [sac]\nenvs: [Pendulum]\nexecutor: ray\n", "unknown executor 'ray'; valid choices: local, slurm"),
    ("name: x\nalgos: [sac]\nenvs: [Pendulum]\nseeds: {a: 1}\n", "'seeds' must be a count"),
    ("name: x\nalgos: [sac]\nenvs: [Pendulum]\noverrides: {sac: 3}\n", "overrides.sac must map config keys"),
])
def test_bad_spec_shapes_fail_at_load(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        spec.load_spec(path)
    assert message in str(error.value)


@pytest.mark.parametrize("body,message", [
    ("algos: [sacc]\nenvs: [Pendulum]\n", "unknown algorithm 'sacc' (did you mean 'sac'?); valid choices:"),
    ("algos: [sac]\nenvs: [Pendulum]\noverrides: {sac: {lr: 1}}\n", "unknown key 'lr' for algorithm 'sac'"),
    ("algos: [sac]\nenvs: [Pendulum]\noverrides: {sacc: {lr: 1}}\n", "unknown section 'sacc'; valid sections:"),
    ("algos: [sac]\nenvs: [Pendulum]\npreset: none\nenv_overrides: {Hopper: {sac: {tau: 0.1}}}\n",
     "'Hopper' (Hopper-v5) is not an environment of this sweep; valid: Pendulum-v1"),
    ("algos: [sac]\nenvs: [Pendulum]\nenv_overrides: {Pendulum: {protocol: {total_steps: 5}}}\n",
     "a protocol cannot differ per environment"),
    ("algos: [sac]\nenvs: [Pendulum]\nconfig: [nowhere.yaml]\n", "nowhere.yaml': no such file"),
])
def test_bad_spec_content_fails_at_expansion(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\n" + body)
    with pytest.raises(ConfigError) as error:
        spec.load_spec(path).expand(results_root=tmp_path / "results")
    assert message in str(error.value)


def test_bad_spec_through_the_cli_exits_2_and_writes_nothing(results_dir, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nalgos: [sac]\nenvs: [Pendulum]\nworkerz: 2\n")
    result = bench_cli("run", str(path), results_dir=results_dir)
    assert result.returncode == 2
    assert "unknown key(s) 'workerz'; valid keys: name, algos, envs, seeds" in " ".join(result.stderr.split())
    assert not results_dir.exists()


def test_grid_flags_cannot_be_mixed_with_a_spec(results_dir):
    result = bench_cli("run", str(ROOT / "sweeps/smoke.yaml"), "--algos", "sac", "--seeds", "3", results_dir=results_dir)
    assert result.returncode == 2 and "--algos, --seeds cannot be combined with a sweep spec" in result.stderr


def test_a_plugin_file_in_a_spec_is_relative_to_the_spec_and_a_module_name_stays_a_name(tmp_path, monkeypatch):
    (tmp_path / "specs").mkdir()
    path = tmp_path / "specs" / "p.yaml"
    path.write_text("name: p\nalgos: [sac]\nenvs: [Pendulum]\nplugins: [agents/my_agent.py, nan_agent]\n")
    monkeypatch.chdir(ROOT)  # anywhere but the spec's folder
    assert spec.load_spec(path).plugins == [str(tmp_path / "specs" / "agents" / "my_agent.py"), "nan_agent"]
