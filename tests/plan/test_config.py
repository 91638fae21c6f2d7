"""Typed configs: coercion, validation, per-env defaults, override routing, protocols."""

from dataclasses import dataclass

import pytest

import algorithms
from algorithms import config as cfg
from algorithms.base import validate_config_files
from bench.plan.protocols import available_protocols, load_protocol
from bench.plan.grid import parse_seeds
from bench.plan.layers import from_assignments, route
from tests.helpers import plan_jobs as expand


@dataclass
class Example:
    steps: int = 10
    rate: float = 0.5
    flag: bool = False
    widths: tuple[int, ...] = (1, 2)
    name: str | None = None


def test_values_are_coerced_to_field_types():
    built = cfg.build(Example, {"steps": "1e6", "rate": "3e-4", "flag": "true", "widths": "256,256", "name": "null"})
    assert built == Example(steps=1_000_000, rate=3e-4, flag=True, widths=(256, 256), name=None)
    assert cfg.build(Example, {"widths": [4, 5]}).widths == (4, 5)


@pytest.mark.parametrize("key,value,expected", [
    ("steps", "ten", "int"), ("steps", 2.5, "int"), ("rate", "fast", "float"), ("flag", "maybe", "bool"),
    ("widths", "a,b", "tuple"), ("rate", "nan", "float"),
])
def test_bad_values_name_key_type_and_value(key, value, expected):
    with pytest.raises(cfg.ConfigError) as error:
        cfg.build(Example, {key: value})
    message = str(error.value)
    assert repr(key) in message and expected in message and repr(value) in message


def test_unknown_key_lists_valid_keys():
    with pytest.raises(cfg.ConfigError, match=r"unknown key\(s\) 'stepz'.*valid keys of Example: flag, name, rate, steps, widths"):
        cfg.build(Example, {"stepz": 1})


def test_range_checks_reject_bad_algorithm_values():
    with pytest.raises(cfg.ConfigError, match="tau must be in"):
        algorithms.resolve_config("sac", None, {"tau": "0"})


def test_per_env_blocks_apply_by_family_and_full_id():
    assert algorithms.resolve_config("sac", "Hopper-v5").actor_lr == pytest.approx(3e-4)
    # sac.yaml has a Pendulum block (rl-baselines3-zoo's learning rate); it applies to every version.
    assert algorithms.resolve_config("sac", "Pendulum-v1").actor_lr == pytest.approx(1e-3)
    # Overrides win over the env block.
    assert algorithms.resolve_config("sac", "Pendulum-v1", {"actor_lr": "5e-4"}).actor_lr == pytest.approx(5e-4)


def test_shipped_config_files_and_protocols_validate():
    validate_config_files()
    assert {"quick", "sdac-paper", "standard"} <= set(available_protocols())
    paper = load_protocol("sdac-paper")
    assert (paper.total_steps, paper.eval_every, paper.eval_episodes, paper.warmup_steps, paper.n_envs, paper.utd) \
        == (1_000_000, 50_000, 20, 30_000, 5, 0.2)


def test_protocol_schedule_must_fit_parallel_envs():
    with pytest.raises(cfg.ConfigError, match="eval_every=1001 must be a multiple of n_envs=5"):
        load_protocol("sdac-paper", {"eval_every": 1001})
    assert load_protocol("quick", {"total_steps": 2500, "eval_every": 1000}).eval_steps == [0, 1000, 2000, 2500]


def test_unknown_protocol_lists_choices():
    with pytest.raises(cfg.ConfigError, match="unknown protocol 'fast'.*quick, sdac-paper, standard"):
        load_protocol("fast")


@pytest.mark.parametrize("text,seeds", [("3", [0, 1, 2]), ("3,5,7", [3, 5, 7]), ("0-4", [0, 1, 2, 3, 4]),
                                        ("0-1,9", [0, 1, 9])])
def test_seed_specs(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["0", "a", "4-2", "1,1", "1;2"])
def test_bad_seed_specs(text):
    with pytest.raises(cfg.ConfigError, match="--seeds"):
        parse_seeds(text)


def test_overrides_are_routed_by_prefix():
    routed = route(from_assignments(["tau=0.01", "sac.gamma=0.9", "protocol.eval_episodes=3"]), ["sac"])
    assert routed.per_algo == {"sac": {"tau": "0.01", "gamma": "0.9"}}
    assert routed.protocol == {"eval_episodes": "3"}
    with pytest.raises(cfg.ConfigError, match="prefix 'sdac' is neither 'protocol' nor one of the selected"):
        route(from_assignments(["sdac.tau=1"]), ["sac"])
    with pytest.raises(cfg.ConfigError, match="unknown key 'lr' for algorithm 'sac'; valid keys: .*actor_lr"):
        route(from_assignments(["lr=1e-3"]), ["sac"])


def test_expand_builds_the_grid_with_resolved_configs(tmp_path):
    jobs = expand(["sac"], ["Pendulum", "Hopper-v4"], [0, 1], suite="s", protocol="quick",
                  protocol_overrides={"total_steps": 2000}, overrides=["tau=0.02"], results_root=tmp_path)
    assert [job.name for job in jobs] == ["sac/Pendulum-v1/seed=0", "sac/Pendulum-v1/seed=1",
                                          "sac/Hopper-v4/seed=0", "sac/Hopper-v4/seed=1"]
    assert all(job.agent_config["tau"] == 0.02 and job.protocol["total_steps"] == 2000 for job in jobs)
    assert jobs[0].agent_config["actor_lr"] == 1e-3 and jobs[2].agent_config["actor_lr"] == 3e-4
    assert jobs[3].run_dir == str(tmp_path / "s" / "sac" / "Hopper-v4" / "seed=1")
    assert not tmp_path.joinpath("s").exists(), "expanding must not write anything"


def test_expand_rejects_duplicates_and_bad_suite_names(tmp_path):
    with pytest.raises(cfg.ConfigError, match="Pendulum-v1 is listed twice"):
        expand(["sac"], ["Pendulum", "Pendulum-v1"], [0], suite="s", results_root=tmp_path)
    with pytest.raises(cfg.ConfigError, match="suite name '../x'"):
        expand(["sac"], ["Pendulum"], [0], suite="../x", results_root=tmp_path)


def test_override_files_layer_between_yaml_defaults_and_cli_overrides(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("sac: {tau: 0.02, gamma: 0.9}\nprotocol: {eval_episodes: 3}\n")
    job = expand(["sac"], ["Pendulum"], [0], suite="s", protocol="quick", config_files=[path],
                 overrides=["gamma=0.95"], results_root=tmp_path)[0]
    assert job.agent_config["tau"] == 0.02 and job.agent_config["gamma"] == 0.95
    assert job.protocol["eval_episodes"] == 3
    path.write_text("sca: {tau: 0.02}\n")
    with pytest.raises(cfg.ConfigError, match="unknown section 'sca'; valid sections: .*protocol, .*sac"):
        expand(["sac"], ["Pendulum"], [0], suite="s", config_files=[path], results_root=tmp_path)
    path.write_text("sac: {taus: 0.02}\n")
    with pytest.raises(cfg.ConfigError, match="unknown key 'taus' for algorithm 'sac'"):
        expand(["sac"], ["Pendulum"], [0], suite="s", config_files=[path], results_root=tmp_path)


@pytest.mark.parametrize("name", ["cpu-smoke.yaml", "small-nets.yaml"])
def test_shipped_override_files_load_for_every_algorithm(name, tmp_path):
    path = algorithms.base.CONFIG_DIR / name
    jobs = expand(algorithms.available_algorithms(), ["Pendulum"], [0], suite="s", config_files=[path],
                  results_root=tmp_path)
    assert {job.algo for job in jobs} >= {"sac", "sdac", "dpmd"}
