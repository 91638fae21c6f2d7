"""Presets resolve to exactly the settings their papers' released code used. The tables below are written from the
sources they cite, independently of bench/data/presets/*.yaml: every algorithm under every preset is resolved
through the real planner, and each of its fields must equal the table's value (fields the table does not list:
the algorithm's own defaults, which docs/algorithms.md cites). Any drift, in a preset file or in an algorithm's
defaults, fails here.

[SDAC-code] github mahaitongdae/diffusion_policy_online_rl a50cf41; [SDAC-dev] github
mahaitongdae/DACER-Diffusion-with-Online-RL (branch dev_tianyi, c67b40a); [TD3-2018] github sfujim/TD3 bc98e62 and
Fujimoto et al. 2018 §6.1; [QSM-code] github Alescontrela/score_matching_rl 2e77893; [DIPO-code] github
BellmanTimeHut/DIPO c6d8d1b (README Hopper row); [QVPO-code] github wadx2019/qvpo 40a1974."""

import math

import pytest
import yaml

import algorithms
from algorithms import config as cfg
from bench.plan.presets import PRESET_DIR, available_presets, load_preset
from bench.plan.spec import SweepSpec

E = math.e
# (field, value, source) --------------------------------------------------------------------------------------
SAC_SDAC_CODE = [
    ("hidden", [256, 256, 256], "[SDAC-code] scripts/train_mujoco.py:42-43,80"),
    ("activation", "gelu", "[SDAC-code] scripts/train_mujoco.py:85,122"),
    ("actor_lr", 3e-4, "[SDAC-code] scripts/train_mujoco.py:48,123"),
    ("critic_lr", 3e-4, "[SDAC-code] relax/algorithm/sac.py:31 (one optimizer, --lr)"),
    ("alpha_lr", 3e-4, "[SDAC-code] relax/algorithm/sac.py:27"),
    ("init_alpha", E, "[SDAC-code] relax/network/sac.py:44 (log alpha = 1)"),
    ("log_std_max", 0.5, "[SDAC-code] relax/network/blocks.py:86"),
    ("log_std_min", -20.0, "[SDAC-code] relax/network/blocks.py:85"),
    ("tanh_log_prob_correction", False, "[SDAC-code] relax/network/common.py:33 (commented out)"),
    ("reward_scale", 0.2, "[SDAC-code] relax/algorithm/sac.py:27,54"),
]
TD3_SDAC_DEV = [
    ("hidden", [256, 256], "[SDAC-dev] relax/algorithm/TD3.py:18-19,36-43"),
    ("activation", "relu", "[SDAC-dev] relax/algorithm/TD3.py:18-19"),
    ("actor_lr", 3e-4, "[SDAC-dev] relax/algorithm/TD3.py:83"),
    ("critic_lr", 3e-4, "[SDAC-dev] relax/algorithm/TD3.py:87"),
    ("exploration_noise", 0.1, "[SDAC-dev] scripts/train_td3.py:44"),
    ("target_noise", 0.2, "[SDAC-dev] scripts/train_td3.py:48"),
    ("target_noise_clip", 0.5, "[SDAC-dev] scripts/train_td3.py:49"),
    ("policy_delay", 2, "[SDAC-dev] scripts/train_td3.py:50"),
]
QSM_SDAC_CODE = [
    ("sampler", "langevin", "[SDAC-code] relax/utils/langevin.py:17-35"),
    ("langevin_steps", 20, "[SDAC-code] scripts/train_mujoco.py:119"),
    ("particles", 32, "[SDAC-code] scripts/train_mujoco.py:53,119"),
    ("score_lr", 3e-4, "[SDAC-code] scripts/train_mujoco.py:48,120"),
    ("score_lr_end", 3e-5, "[SDAC-code] scripts/train_mujoco.py:49,120"),
    ("reward_scale", 1.0, "[SDAC-code] relax/algorithm/qsm.py:60"),
]
DIPO_SDAC_CODE = [
    ("diffusion_steps", 100, "[SDAC-code] scripts/train_mujoco.py:150"),
    ("action_gradient_steps", 30, "[SDAC-code] scripts/train_mujoco.py:151"),
    ("action_grad_norm", 0.16, "[SDAC-code] scripts/train_mujoco.py:151"),
    ("target_policy_every", 2, "[SDAC-code] scripts/train_mujoco.py:151"),
    ("reward_scale", 1.0, "[SDAC-code] relax/algorithm/dipo.py:94"),
]
DACER_SDAC_CODE = [
    ("hidden", [256, 256, 256], "[SDAC-code] scripts/train_mujoco.py:42-45,80-81"),
    ("beta_schedule", "linear", "[SDAC-code] relax/utils/diffusion.py:84"),
    ("beta_schedule_scale", 0.3, "[SDAC-code] relax/utils/diffusion.py:83"),
    ("init_noise_scale", 0.5, "[SDAC-code] relax/utils/diffusion.py:109"),
    ("critic_lr", 3e-4, "[SDAC-code] scripts/train_mujoco.py:48,132; relax/algorithm/dacer.py:52"),
    ("policy_lr", 3e-4, "[SDAC-code] scripts/train_mujoco.py:48,132; relax/algorithm/dacer.py:53-59"),
    ("policy_lr_end", 3e-5, "[SDAC-code] scripts/train_mujoco.py:49,132"),
    ("policy_lr_decay_begin", 25_000, "[SDAC-code] relax/algorithm/dacer.py:57"),
    ("policy_lr_decay_end", 75_000, "[SDAC-code] relax/algorithm/dacer.py:56-57"),
    ("noise_scale", 0.15, "[SDAC-code] relax/network/dacer.py:42"),
]
QVPO_SDAC_CODE = [
    ("particles", 32, "[SDAC-code] scripts/train_mujoco.py:53; relax/network/qvpo.py:37-59"),
    ("weighting", "q_above_one", "[SDAC-code] relax/algorithm/qvpo.py:117-118"),
    ("entropy_weight", 0.02, "[SDAC-code] relax/algorithm/qvpo.py:159-165,183"),
    ("entropy_weight_min", 0.002, "[SDAC-code] relax/algorithm/qvpo.py:159-165"),
    ("reward_scale", 0.2, "[SDAC-code] relax/algorithm/qvpo.py:44,89"),
    ("policy_lr_end", 5e-5, "[SDAC-code] relax/algorithm/qvpo.py:39"),
]
RELEASED_SCHEDULE = [  # DIPO and QVPO build GaussianDiffusion with its defaults in the released code
    ("beta_schedule", "linear", "[SDAC-code] relax/utils/diffusion.py:84; net/dipo.py:29-30, net/qvpo.py:33-35"),
    ("beta_schedule_scale", 0.3, "[SDAC-code] relax/utils/diffusion.py:83"),
]
DACER_RELEASED = [("alpha_steps", None, "[SDAC-code] relax/algorithm/dacer.py:40 (fixed 10,000-update interval)")]
QVPO_RELEASED = [
    ("weight_grad_leak", True, "[SDAC-code] relax/algorithm/qvpo.py:115-143"),
    ("double_critic_step", True, "[SDAC-code] relax/algorithm/qvpo.py:110-113,175-176"),
    ("entropy_obs_shuffle", True, "[SDAC-code] relax/algorithm/qvpo.py:123-127"),
]
DPMD_RELEASED = [
    ("q_normalization", "running_std", "[SDAC-code] relax/algorithm/dpmd.py:132-133"),
    ("released_weight_bug", True, "[SDAC-code] relax/algorithm/dpmd.py:132-134"),
    ("old_policy_samples", 1, "[SDAC-code] relax/algorithm/dpmd.py:128-134 (one sample per state)"),
    ("double_critic_step", True, "[SDAC-code] relax/algorithm/dpmd.py:123-126,182-183"),
]
TD3_ORIGINAL = [
    ("hidden", [400, 300], "[TD3-2018] §6.1; TD3.py:24-25,43-49"),
    ("actor_lr", 1e-3, "[TD3-2018] §6.1"),
    ("critic_lr", 1e-3, "[TD3-2018] §6.1"),
    ("batch_size", 100, "[TD3-2018] §6.1; main.py:43"),
]
QSM_ORIGINAL = [
    ("sampler", "ddpm", "[QSM-code] score_matching_learner.py"),
    ("diffusion_steps", 5, "[QSM-code] score_matching_learner.py:73"),
    ("beta_schedule", "vp", "[QSM-code] score_matching_learner.py:76,146-153"),
    ("beta_schedule_scale", 1.0, "[QSM-code] score_matching_learner.py:76,146-153"),
    ("init_noise_scale", 1.0, "[QSM-code] diffusion.py:99"),
    ("hidden", [512, 512], "[QSM-code] examples config:31-32"),
    ("score_activation", "mish", "[QSM-code] score_matching_learner.py:99-102"),
    ("particles", 1, "[QSM-code] one sample per state"),
    ("action_noise", 0.1, "[QSM-code] score_matching_learner.py:193-195,299-301"),
    ("q_grad_scale", 50.0, "[QSM-code] examples config:30"),
    ("score_target_critic", "mean", "[QSM-code] score_matching_learner.py:263-271"),
    ("score_lr_schedule", "cosine", "[QSM-code] score_matching_learner.py:95-96"),
    ("score_lr_end", 0.0, "[QSM-code] score_matching_learner.py:95-96"),
    ("score_lr_decay_begin", 0, "[QSM-code] score_matching_learner.py:95-96"),
    ("score_lr_decay_end", 2_000_000, "[QSM-code] score_matching_learner.py:95-96"),
]
DIPO_ORIGINAL = [
    ("activation", "mish", "[DIPO-code] agent/model.py"),
    ("time_hidden", 256, "[DIPO-code] agent/model.py"),
    ("init_noise_scale", 1.0, "[DIPO-code] agent/diffusion.py p_sample_loop"),
    ("eval_posterior_noise", 0.0, "[DIPO-code] noise_ratio 0 when evaluating"),
    ("adam_eps", 1e-5, "[DIPO-code] agent/DiPo.py"),
    ("critic_max_grad_norm", 1.0, "[DIPO-code] README, Hopper row"),
    ("clip_critics_separately", False, "[DIPO-code] agent/DiPo.py (one clip over both critics)"),
    ("policy_max_grad_norm", 0.5, "[DIPO-code] README, Hopper row (1 on the full MSE)"),
    ("action_gradient_steps", 20, "[DIPO-code] README, Hopper row"),
    ("action_grad_norm", 0.3, "[DIPO-code] README, Hopper row"),
    ("action_grad_norm_per_dim", True, "[DIPO-code] agent/DiPo.py"),
    ("target_policy_every", 1, "[DIPO-code] README, Hopper row"),
]
QVPO_ORIGINAL = [
    ("init_noise_scale", 1.0, "[QVPO-code] agent/diffusion.py"),
    ("particles", 4, "[QVPO-code] main.py:80"),
    ("target_particles", 4, "[QVPO-code] main.py:81"),
    ("train_particles", 64, "[QVPO-code] main.py:73"),
    ("eval_particles", 32, "[QVPO-code] main.py:83"),
    ("target_action_from", "target", "[QVPO-code] agent/qvpo.py:166"),
    ("act_with_ema", False, "[QVPO-code] agent/qvpo.py:104"),
    ("weighting", "advantage", "[QVPO-code] main.py:87; q_transform.py:43-50"),
    ("entropy_weight", 0.0198, "[QVPO-code] main.py:97,193"),
    ("entropy_weight_min", 0.002, "[QVPO-code] main.py:97,193"),
    ("entropy_weight_horizon", 990_000, "[QVPO-code] main.py:97,193"),
    ("policy_lr", 1e-4, "[QVPO-code] main.py:41"),
    ("policy_lr_end", 1e-4, "[QVPO-code] main.py:41 (constant)"),
    ("adam_eps", 1e-5, "[QVPO-code] agent/qvpo.py:57,75"),
    ("max_grad_norm", 2.0, "[QVPO-code] main.py:54"),
    ("policy_delay", 1, "[QVPO-code] main.py:91"),
    ("target_update_every", 1, "[QVPO-code] agent/qvpo.py:236-241"),
    ("reward_scale", 1.0, "[QVPO-code] no scaling"),
]
# SDAC and DPMD run at their released defaults under the sdac-paper presets: the values that define the paper's
# setup, from the code (checked here against the resolved configs, though no preset file sets them).
RSM_SDAC_CODE = [
    ("hidden", [256, 256, 256], "[SDAC-code] scripts/train_mujoco.py:42-45,80-81"),
    ("activation", "mish", "[SDAC-code] scripts/train_mujoco.py:92 (mish)"),
    ("diffusion_steps", 20, "[SDAC-code] scripts/train_mujoco.py:44"),
    ("beta_schedule", "linear", "[SDAC-code] scripts/train_mujoco.py:58"),
    ("beta_schedule_scale", 0.8, "[SDAC-code] scripts/train_mujoco.py:57"),
    ("init_noise_scale", 0.5, "[SDAC-code] relax/utils/diffusion.py:109"),
    ("particles", 32, "[SDAC-code] scripts/train_mujoco.py:53"),
    ("critic_lr", 3e-4, "[SDAC-code] scripts/train_mujoco.py:48"),
    ("policy_lr", 3e-4, "[SDAC-code] scripts/train_mujoco.py:48"),
    ("policy_lr_end", 3e-5, "[SDAC-code] scripts/train_mujoco.py:49"),
    ("alpha_lr", 7e-3, "[SDAC-code] scripts/train_mujoco.py:50"),
    ("alpha_update_every", 250, "[SDAC-code] scripts/train_mujoco.py:51"),
    ("noise_scale", 0.1, "[SDAC-code] scripts/train_mujoco.py:54"),
    ("init_alpha", 5.0, "[SDAC-code] relax/network/diffv2.py:120 (log alpha = ln 5)"),
    ("target_entropy_scale", 0.9, "[SDAC-code] relax/network/diffv2.py:104"),
    ("reward_scale", 0.2, "[SDAC-code] relax/algorithm/sdac.py:48"),
    ("tau", 0.005, "[SDAC-code] relax/algorithm/sdac.py:45"),
    ("policy_delay", 2, "[SDAC-code] relax/algorithm/sdac.py:47"),
]
RELEASED_DEFAULTS = {"sdac": RSM_SDAC_CODE, "dpmd": RSM_SDAC_CODE}
ORIGINALS = {"td3": TD3_ORIGINAL, "qsm": QSM_ORIGINAL, "dipo": DIPO_ORIGINAL, "qvpo": QVPO_ORIGINAL}
SDAC_PAPER = {"sac": SAC_SDAC_CODE, "td3": TD3_SDAC_DEV, "qsm": QSM_SDAC_CODE, "dipo": DIPO_SDAC_CODE,
              "dacer": DACER_SDAC_CODE, "qvpo": QVPO_SDAC_CODE, "sdac": [], "dpmd": []}
EXPECTED = {
    "sdac-paper": SDAC_PAPER,
    "sdac-paper-released": {**SDAC_PAPER, "dipo": DIPO_SDAC_CODE + RELEASED_SCHEDULE,
                            "dacer": DACER_SDAC_CODE + DACER_RELEASED,
                            "qvpo": QVPO_SDAC_CODE + RELEASED_SCHEDULE + QVPO_RELEASED, "dpmd": DPMD_RELEASED},
    "standard": ORIGINALS,
    "dacer-paper": {"dacer": [], **ORIGINALS},
}
# Protocol fields of each preset's protocol, with their sources.
SDAC_PROTOCOL = [
    ("n_envs", 5, "[SDAC-code] scripts/train_mujoco.py:41"), ("utd", 0.2, "[SDAC-code] relax/trainer/off_policy.py:170-187"),
    ("total_steps", 1_000_000, "[SDAC-code] scripts/train_mujoco.py:47"),
    ("warmup_steps", 30_000, "[SDAC-code] scripts/train_mujoco.py:46"),
    ("eval_every", 50_000, "[SDAC-code] scripts/train_mujoco.py:175"),
    ("eval_episodes", 20, "[SDAC-code] relax/trainer/off_policy.py:35"),
    ("replay_size", 1_000_000, "[SDAC-code] scripts/train_mujoco.py:83"),
    ("env_version", "v4", "[SDAC-code] requirements.txt (gymnasium 1.0.0), scripts/train_mujoco.py:39"),
]
PROTOCOLS = {
    "sdac-paper": SDAC_PROTOCOL, "sdac-paper-released": SDAC_PROTOCOL,
    "standard": [("n_envs", 1, "SAC paper, arXiv 1812.05905, Table 1 (one gradient step per env step)"),
                 ("utd", 1.0, "same"), ("total_steps", 1_000_000, "same (1M steps on MuJoCo)"),
                 ("env_version", None, "the pinned short names (bench/plan/envs.py)")],
    "dacer-paper": [("n_envs", 20, "[DACER-code] scripts/train_mujoco.py (--num_vec_envs 20)"),
                    ("utd", 0.05, "[DACER-code] one update per vector step of 20 envs"),
                    ("total_steps", 30_000_000, "[DACER-code] scripts/train_mujoco.py (--total_step 3e7)"),
                    ("warmup_steps", 30_000, "[DACER-code] scripts/train_mujoco.py (--start_step, other envs 3e4)"),
                    ("eval_every", 300_000, "[DACER-code] trainer save_policy_every=300000"),
                    ("eval_episodes", 10, "[DACER-code] trainer (10 episodes)"),
                    ("env_version", "v4", "the paper's -v3 needs mujoco-py; -v4 is the closest Gymnasium has")],
}
ENVS = ["Hopper", "Humanoid"]  # a small and a large task: env blocks (DACER's Humanoid 512 networks) must not leak


def resolved(preset: str, env: str) -> dict:
    spec = SweepSpec(name="presets", algos=algorithms.available_algorithms(), envs=[env], seeds=[0], preset=preset)
    return {job.algo: job for job in spec.expand("unused-results-root")}


def close(left, right) -> bool:
    if isinstance(left, float) or isinstance(right, float):
        return left is not None and right is not None and math.isclose(left, right, rel_tol=1e-9)
    return (list(left) if isinstance(left, tuple) else left) == (list(right) if isinstance(right, tuple) else right)


def test_every_shipped_preset_has_a_table():
    assert sorted(EXPECTED) == available_presets()


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_every_algorithm_resolves_to_the_cited_values_under_every_preset(preset, env):
    jobs = resolved(preset, env)
    drift = []
    for algo, job in jobs.items():
        if not algorithms.get_algorithm(algo).__module__.startswith("algorithms."):
            continue  # a test plugin registered by another test
        defaults = cfg.to_dict(algorithms.resolve_config(algo, job.env_id))
        cited = RELEASED_DEFAULTS.get(algo, []) if preset.startswith("sdac-paper") else []
        table = {key: value for key, value, _ in [*cited, *EXPECTED[preset].get(algo, [])]}
        for key, value in job.agent_config.items():
            if key == "planned_updates":
                continue  # the harness's, checked below
            expected = table.get(key, defaults[key])
            if not close(value, expected):
                drift.append(f"{algo}.{key} = {value!r}, the table says {expected!r}")
        unknown = set(table) - set(job.agent_config)
        drift += [f"{algo}.{key} is in the table but not a field" for key in sorted(unknown)]
    assert not drift, f"{preset} on {env}:\n" + "\n".join(drift)


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_the_preset_files_set_exactly_the_tabled_fields(preset):
    """Every value in a preset file has a row (and so a source) in the tables above."""
    data = yaml.safe_load((PRESET_DIR / f"{preset}.yaml").read_text())
    in_file = {(algo, key) for algo, values in (data.get("algorithms") or {}).items() for key in values}
    in_table = {(algo, key) for algo, rows in EXPECTED[preset].items() for key, _, _ in rows}
    assert in_file == in_table
    assert all(source for rows in EXPECTED[preset].values() for _, _, source in rows)


@pytest.mark.parametrize("preset", sorted(PROTOCOLS))
def test_each_preset_runs_its_papers_protocol(preset):
    job = next(iter(resolved(preset, "Hopper").values()))
    for key, value, source in PROTOCOLS[preset]:
        assert close(job.protocol[key], value), f"{preset}: protocol {key} = {job.protocol[key]!r} ({source})"
    assert job.preset == preset and job.protocol_name == load_preset(preset).protocol


def test_the_harness_plans_the_update_budget_for_agents_that_schedule_over_it():
    """DACER spaces its entropy regulator over the run (docs/algorithms.md, DACER): 194,000 updates under the SDAC
    protocol, 1,498,500 under DACER's (1.5M less the warm-up's)."""
    assert resolved("sdac-paper", "Hopper")["dacer"].agent_config["planned_updates"] == 194_000
    assert resolved("dacer-paper", "Hopper")["dacer"].agent_config["planned_updates"] == 1_498_500


def test_command_line_layers_apply_over_a_preset(tmp_path):
    from bench.plan import layers

    spec = SweepSpec(name="s", algos=["sac"], envs=["Hopper"], seeds=[0], preset="sdac-paper")
    job = spec.expand(tmp_path, [layers.from_assignments(["hidden=64,64", "protocol.total_steps=5000"])])[0]
    assert job.agent_config["hidden"] == [64, 64] and job.agent_config["activation"] == "gelu"
    assert job.protocol["total_steps"] == 5000 and job.protocol["env_version"] == "v4"
    other = SweepSpec(name="s", algos=["sac"], envs=["Hopper"], seeds=[0], preset="sdac-paper", protocol="quick")
    (job,) = other.expand(tmp_path)
    assert job.protocol["n_envs"] == 1 and job.env_id == "Hopper-v5"  # another protocol: the preset's changes to
    assert job.agent_config["activation"] == "gelu"                      # its own do not apply; its layers do


def test_an_unknown_preset_names_the_valid_choices(tmp_path):
    with pytest.raises(cfg.ConfigError, match=r"unknown preset 'sdac'; valid choices: dacer-paper, sdac-paper, "):
        SweepSpec(name="s", algos=["sac"], envs=["Hopper"], seeds=[0], preset="sdac").expand(tmp_path)


def test_the_default_preset_gives_mujoco_tasks_v4_and_leaves_pendulum_at_v1(tmp_path):
    spec = SweepSpec(name="s", algos=["sac"], envs=["Pendulum", "Hopper"], seeds=[0])
    assert [job.env_id for job in spec.expand(tmp_path)] == ["Pendulum-v1", "Hopper-v4"]
