"""The plan `bench run` prints before launching: updates and CPU-hours per run from the measured costs, and the
warnings a user must see before starting paper-scale diffusion runs on a CPU."""

import yaml

from bench.launch.preview import COSTS_FILE, HEAVY_RUN_CPU_HOURS, preview
from tests.helpers import ROOT, plan_jobs

CPU_SMOKE = ROOT / "algorithms" / "configs" / "cpu-smoke.yaml"


def plan(tmp_path, algos, **kwargs):
    return preview(plan_jobs(algos, ["Hopper"], [0], suite="p", results_root=tmp_path, **kwargs))


def test_paper_settings_on_a_cpu_warn_with_the_measured_cost(tmp_path):
    planned = plan(tmp_path, ["sdac", "sac"], preset="sdac-paper")
    sdac = next(group for group in planned.groups if group.algo == "sdac")
    update_ms = yaml.safe_load(COSTS_FILE.read_text())["algorithms"]["sdac"]["small"]["update_ms"]
    assert sdac.updates == 194_000 and sdac.measured_config
    assert sdac.cpu_hours >= sdac.updates * update_ms / 3.6e6 > HEAVY_RUN_CPU_HOURS  # updates alone, plus acting
    assert [line for line in planned.warnings if line.startswith("paper-scale runs on a CPU: sdac on Hopper-v4")]
    assert "sac on" not in " ".join(planned.warnings)  # SAC's 194k updates are well under the threshold


def test_a_changed_config_is_estimated_at_the_defaults_and_said_so(tmp_path):
    planned = plan(tmp_path, ["qsm"], config_files=[CPU_SMOKE])
    (warning,) = planned.warnings
    assert warning.startswith("possibly long runs on a CPU: qsm on Hopper-v5") and "particles" in warning
    assert "paper-scale" not in warning  # cpu-smoke is not a paper setting, and suggesting it again would be odd


def test_the_estimate_follows_the_budget_and_short_runs_do_not_warn(tmp_path):
    short, long = (plan(tmp_path, ["sdac"], protocol="quick", protocol_overrides={"total_steps": steps})
                   for steps in (11_000, 21_000))
    assert (short.groups[0].updates, long.groups[0].updates) == (10_000, 20_000)
    # The 10,000 more steps cost at least their updates, and at most those plus acting, env steps (1,000 each,
    # generously) and the 10 more evaluations of 5 x 1,000 steps: priced from the measured rows, not the formula.
    costs = yaml.safe_load(COSTS_FILE.read_text())
    row = costs["algorithms"]["sdac"]["small"]
    added_hours = long.groups[0].cpu_hours - short.groups[0].cpu_hours
    updates_hours = 10_000 * row["update_ms"] / 3.6e6
    evaluations_hours = 10 * 1_000 * (row["act20_ms"] + 5 * 1.0) / 3.6e6
    assert updates_hours < added_hours < updates_hours + 10_000 * (row["act1_ms"] + 1.0) / 3.6e6 + evaluations_hours
    assert short.warnings == [] and short.groups[0].cpu_hours < HEAVY_RUN_CPU_HOURS


def test_a_warm_up_filling_the_budget_warns(tmp_path):
    planned = plan(tmp_path, ["sac"], protocol="quick", protocol_overrides={"total_steps": 1000, "warmup_steps": 1000})
    assert planned.groups[0].updates == 0
    assert any("no gradient update will be made" in line for line in planned.warnings)
