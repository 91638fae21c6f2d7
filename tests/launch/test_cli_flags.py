"""Every numeric flag of `bench run/status/report/tune` is range-checked when it is parsed (one line, exit 2, never
clamped), names that are near a valid one get "did you mean", and what is allowed but odd (more workers than
cores, a warm-up that fills the budget) is said once. A few cases go through a `bench` subprocess; the table goes
through the same entry point in this process, to keep the file fast."""

import os

import pytest

from bench.cli import main
from tests.helpers import bench_cli

GRID = ["--algos", "sac", "--envs", "Pendulum", "--preset", "none", "--protocol", "quick", "--threads", "1",
        "--device", "cpu", "--dry-run"]

FLAG_CASES = [
    (["run", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
    (["run", "--steps", "ten"], "argument --steps: expected an integer, got 'ten'"),
    (["run", "--eval-every", "-5"], "argument --eval-every: must be >= 1, got -5"),
    (["run", "--eval-episodes", "0"], "argument --eval-episodes: must be >= 1, got 0"),
    (["run", "--warmup", "-1"], "argument --warmup: must be >= 0, got -1"),
    (["run", "--n-envs", "0"], "argument --n-envs: must be >= 1, got 0"),
    (["run", "--utd", "nan"], "argument --utd: must be a finite number > 0, got nan"),
    (["run", "--utd", "0"], "argument --utd: must be a finite number > 0, got 0"),
    (["run", "--workers", "0"], "argument --workers: must be >= 1, got 0"),
    (["run", "--threads", "-2"], "argument --threads: must be >= 1, got -2"),
    (["run", "--checkpoint-every", "-1"], "argument --checkpoint-every: must be >= 0, got -1"),
    (["status", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
    (["report", "x", "--reps", "0"], "argument --reps: must be >= 1, got 0"),
    (["report", "x", "--points", "1"], "argument --points: must be >= 2, got 1"),
    (["report", "x", "--bootstrap-seed", "-1"], "argument --bootstrap-seed: must be >= 0, got -1"),
    (["tune", "--trials", "0"], "argument --trials: must be >= 1, got 0"),
    (["tune", "--workers", "0"], "argument --workers: must be >= 1, got 0"),
    (["tune", "--pruner-warmup", "-1"], "argument --pruner-warmup: must be >= 0, got -1"),
    (["tune", "--startup-trials", "-3"], "argument --startup-trials: must be >= 0, got -3"),
    (["tune", "--sampler-seed", "-1"], "argument --sampler-seed: must be >= 0, got -1"),
    (["tune", "--eval-every", "0"], "argument --eval-every: must be >= 1, got 0"),
]


@pytest.mark.parametrize("argv, message", FLAG_CASES, ids=lambda case: " ".join(case) if isinstance(case, list) else "")
def test_a_numeric_flag_out_of_range_is_one_line_at_parse_time(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"bench {argv[0]}: error: {message} (see bench {argv[0]} --help)"]


def test_the_real_command_refuses_a_bad_flag_in_one_line(tmp_path):
    result = bench_cli("run", *GRID, "--steps", "0", results_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["bench run: error: argument --steps: must be >= 1, got 0 "
                                          "(see bench run --help)"]


NAME_CASES = [
    (["--algos", "sacc"], "unknown algorithm 'sacc' (did you mean 'sac'?)"),
    (["--envs", "Pendulm"], "unknown environment 'Pendulm' (did you mean 'Pendulum'?)"),
    (["--protocol", "quik"], "unknown protocol 'quik' (did you mean 'quick'?)"),
    (["--preset", "sdac-papr"], "unknown preset 'sdac-papr' (did you mean 'sdac-paper'?)"),
    (["-o", "batchsize=64"], "unknown key 'batchsize' for algorithm 'sac' (did you mean 'batch_size'?)"),
    (["--envs", "Pendulum-v7"], "unknown environment 'Pendulum-v7' (Pendulum has v1)"),
    (["--envs", "Hopper", "--env-version", "v9"], "env version 'v9': no environment here has it; Hopper has v2, "
                                                  "v3, v4, v5"),
    (["--algos", "sac,sdac", "-o", "diffusion_steps=5"],
     "key 'diffusion_steps' exists for sdac but not for 'sac'; to set it only there give -o sdac.diffusion_steps=5"),
]


@pytest.mark.parametrize("extra, message", NAME_CASES, ids=lambda case: " ".join(case) if isinstance(case, list) else "")
def test_a_near_miss_gets_a_hint(extra, message, capsys, tmp_path):
    # later flags win: the grid's own --algos/--envs/--protocol/--preset are overridden by the case's
    assert main(["run", *GRID, "--results-dir", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_more_workers_than_cores_and_a_warmup_that_fills_the_budget_warn(tmp_path):
    workers = (os.cpu_count() or 1) + 3
    result = bench_cli("run", *GRID, "--seeds", str(workers), "--workers", str(workers), "--steps", "1000",
                       "--warmup", "1000", results_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: sac on Pendulum-v1: warm-up 1,000 env steps is at or above the budget of 1,000: no gradient update "
        "will be made (lower --warmup or raise --steps)",
        f"warning: --workers {workers}: {workers} runs at once on {os.cpu_count()} cores; each gets 1 torch "
        "thread(s) and they share the cores (no faster in total, each run slower)"]


def test_tune_inputs_are_checked_before_any_trial(tmp_path, capsys):
    bad_yaml = tmp_path / "space.yaml"
    bad_yaml.write_text("actor_lr: {low: 1.0e-4,\n  high: [\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text("actor_lrr: {low: 1.0e-4, high: 1.0e-3}\n")
    bad_step = tmp_path / "step.yaml"
    bad_step.write_text("batch_size: {low: 32, high: 256, step: 0}\n")
    base = ["tune", "--algo", "sac", "--env", "Pendulum", "--results-dir", str(tmp_path / "r")]
    cases = [
        (["--search", str(bad_yaml)], f"error: {bad_yaml}: not valid YAML: line 3, column 1:"),
        (["--search", str(typo)], f"error: search space {typo}: unknown key 'actor_lrr' for algorithm 'sac' (did "
                                  "you mean 'actor_lr'?)"),
        (["--search", str(bad_step)], f"error: search space {bad_step}: batch_size: step must be a number in "
                                      "(0, high - low = 224], got 0"),
        (["--storage", "redis://host/0"], "error: --storage 'redis://host/0': unsupported; supported schemes: "
                                          "sqlite:///path/study.db, postgresql://"),
    ]
    for extra, start in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith(start), err
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("seed=*"))
