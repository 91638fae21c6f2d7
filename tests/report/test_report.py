"""`bench collect` / `bench report` on synthetic run folders whose statistics are known by hand."""

import csv
import itertools

import numpy as np
import pandas as pd
import pytest
from rliable import metrics

from algorithms.config import ConfigError
from bench.report import stats
from bench.report.collect import collect
from bench.report.normalize import add_scores, normalization
from bench.report.builder import ReportOptions, make_report
from bench.report.synthetic import write_grid, write_run
from tests.helpers import bench_cli

STEPS = [0, 500, 1000]

# Final scores chosen so that IQM, mean, median and optimality gap all differ (worked out in test_point_estimates).
HAND_SCORES = {"Hopper-v5": [0.1, 0.2, 0.3, 0.4], "Walker2d-v5": [0.5, 0.6, 0.7, 1.6], "Ant-v5": [0.0, 0.0, 0.0, 0.4]}


def write_hand_suite(results, suite="hand", algo="sac"):
    for env, finals in HAND_SCORES.items():
        for seed, final in enumerate(finals):
            write_run(results, suite, algo, env, seed, STEPS, [0.0, final / 2, final])
    return results / suite


def aggregates(report_dir):
    frame = pd.read_csv(report_dir / "aggregates.csv")
    return {(row.label, row.metric): row for row in frame.itertuples()}


def test_point_estimates_equal_hand_computed_values(tmp_path):
    suite = write_hand_suite(tmp_path)
    report = make_report([suite], suite / "report", ReportOptions(normalize="none", reps=50))
    values = aggregates(report.folder)
    # 12 scores sorted: 0 0 0 .1 .2 .3 .4 .4 .5 .6 .7 1.6 -> the middle six (25 % cut each side) average 1.9 / 6
    assert values["sac", "IQM"].estimate == pytest.approx(1.9 / 6)
    assert values["sac", "Mean"].estimate == pytest.approx(4.8 / 12)
    # per-task means 0.25, 0.85, 0.1 -> median 0.25
    assert values["sac", "Median"].estimate == pytest.approx(0.25)
    # 1 - mean(min(score, 1)): the 1.6 counts as 1
    assert values["sac", "Optimality Gap"].estimate == pytest.approx(1 - 4.2 / 12)
    for metric in stats.AGGREGATES:
        row = values["sac", metric]
        assert row.ci_low <= row.estimate + 1e-9 <= row.ci_high + 2e-9


def test_dominated_algorithm_has_probability_of_improvement_near_zero(tmp_path):
    suite = write_hand_suite(tmp_path, algo="sdac")
    for env, finals in HAND_SCORES.items():
        for seed, final in enumerate(finals):  # sac is below sdac's worst run on every task
            write_run(tmp_path, "hand", "sac", env, seed, STEPS, [0.0, -1.0, -2.0 - final])
    report = make_report([suite], suite / "report", ReportOptions(normalize="none", reps=200))
    frame = pd.read_csv(report.folder / "probability_of_improvement.csv")
    row = frame[(frame.x == "sac") & (frame.y == "sdac")].iloc[0]
    assert row.p_x_better == pytest.approx(0.0)
    assert row.ci_high <= 0.05


def test_seeds_are_truncated_to_the_common_minimum_within_an_algorithm(tmp_path):
    for seed in range(5):
        write_run(tmp_path, "s", "sac", "Hopper-v5", seed, STEPS, [0, 1, 10 + seed])
    for seed in range(3):
        write_run(tmp_path, "s", "sac", "Walker2d-v5", seed, STEPS, [0, 1, 20 + seed])
    runs = collect([tmp_path / "s"]).runs.assign(score=lambda frame: frame["final_return"])
    selection = stats.select_runs(runs)
    matrix = stats.score_matrices(selection)["sac"]
    assert matrix.shape == (3, 2)
    assert matrix[:, 0].tolist() == [10, 11, 12]  # the lowest seed numbers are kept
    assert any("truncated to the common minimum of 3" in note for note in selection.notes)
    report = make_report([tmp_path / "s"], tmp_path / "out", ReportOptions(normalize="none", reps=20))
    assert "truncated to the common minimum of 3" in report.markdown.read_text()


def test_final_scores_at_different_budgets_are_noted(tmp_path):
    for seed in range(2):
        write_run(tmp_path, "b", "sac", "Hopper-v5", seed, STEPS, [0, 1, 2])
        write_run(tmp_path, "b", "sdac", "Hopper-v5", seed, [*STEPS, 2000], [0, 1, 2, 3])
    runs = collect([tmp_path / "b"]).runs.assign(score=lambda frame: frame["final_return"])
    assert "Hopper-v5: final evaluations at different env steps (sac 1000, sdac 2000)" in " ".join(
        stats.select_runs(runs).notes)
    same = runs[runs["algo"] == "sac"]
    assert not any("different env steps" in note for note in stats.select_runs(same).notes)


def test_curves_on_different_eval_grids_are_interpolated_not_extrapolated():
    grid = np.array([0.0, 150.0, 300.0, 400.0])
    values = stats.interpolate_run(np.array([0, 100, 300]), np.array([0.0, 10.0, 30.0]), grid)
    assert values[:3].tolist() == [0.0, 15.0, 30.0]
    assert np.isnan(values[3])


def test_step_grid_and_env_curves_use_a_common_grid(tmp_path):
    write_run(tmp_path, "g", "sac", "Hopper-v5", 0, [0, 100, 300], [0.0, 10.0, 30.0])
    write_run(tmp_path, "g", "sac", "Hopper-v5", 1, [0, 200, 400], [0.0, 40.0, 80.0])
    collected = collect([tmp_path / "g"])
    grid, mean, lower, upper = stats.env_curves(collected.evals, points=5)["Hopper-v5"]["sac"]
    assert grid.tolist() == [0, 100, 200, 300, 400]
    # at 200: seed 0 -> 20 (interpolated), seed 1 -> 40; at 400 only seed 1 reached it
    assert mean[2] == pytest.approx(30.0)
    assert mean[4] == pytest.approx(80.0) and np.isnan(lower[4])
    runs = collected.runs.assign(score=collected.runs["final_return"])
    assert stats.step_grid(stats.select_runs(runs), 3).tolist() == [0, 150, 300]  # stops where every run got to


def test_corrupt_csv_is_skipped_with_a_warning_and_the_rest_is_reported(tmp_path):
    suite = write_hand_suite(tmp_path)
    broken = suite / "sac" / "Hopper-v5" / "seed=3" / "eval.csv"
    broken.write_text("step,wall_time_s,eval/return_mean\n0,0.0,1.0\nten,1.0,2.0\n")
    result = bench_cli("report", str(suite), "--reps", "20", "--normalize", "none", results_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "skipped unreadable run" in output and str(broken) in output
    markdown = (suite / "report" / "report.md").read_text()
    assert str(broken) in markdown
    assert f"report: {suite / 'report' / 'report.md'}" in output
    runs = pd.read_parquet(suite / "report" / "runs.parquet")
    assert len(runs) == 11  # 12 written, the corrupt one skipped
    for figure in ("aggregates", "probability_of_improvement", "performance_profile", "sample_efficiency_steps",
                   "sample_efficiency_walltime", "learning_curves", "cost"):
        if figure == "probability_of_improvement":
            continue  # one algorithm: no pairs
        for suffix in ("png", "pdf"):
            assert (suite / "report" / f"{figure}.{suffix}").stat().st_size > 1000


def test_incomplete_runs_are_collected_marked_and_left_out_of_aggregates(tmp_path):
    write_run(tmp_path, "i", "sac", "Hopper-v5", 0, STEPS, [0, 1, 2])
    write_run(tmp_path, "i", "sac", "Hopper-v5", 1, STEPS[:2], [0, 5], done=False, planned_steps=1000)
    collected = collect([tmp_path / "i"])
    partial = collected.runs.set_index("seed").loc[1]
    assert not partial["complete"] and partial["status"] == "interrupted" and partial["last_step"] == 500
    assert len(collected.evals[collected.evals.seed == 1]) == 2
    runs = collected.runs.assign(score=collected.runs["final_return"])
    assert stats.select_runs(runs).runs["seed"].tolist() == [0]
    assert stats.select_runs(runs, include_incomplete=True).runs["seed"].tolist() == [0, 1]


def test_a_truncated_last_line_is_dropped_not_fatal(tmp_path):
    directory = write_run(tmp_path, "t", "sac", "Hopper-v5", 0, STEPS, [0, 1, 2], done=False)
    with open(directory / "eval.csv", "a") as handle:
        handle.write("1500,3.0")  # a kill in the middle of a row
    evals = collect([tmp_path / "t"]).evals
    assert evals["step"].tolist() == STEPS


def test_same_algorithm_in_two_suites_on_one_env_is_two_variants(tmp_path):
    for suite in ("a", "b"):
        write_run(tmp_path, suite, "sac", "Hopper-v5", 0, STEPS, [0, 1, 2])
    write_run(tmp_path, "c", "sdac", "Hopper-v5", 0, STEPS, [0, 1, 2])
    write_run(tmp_path, "d", "sdac", "Walker2d-v5", 0, STEPS, [0, 1, 2])
    labels = set(collect([tmp_path / s for s in "abcd"]).runs["label"])
    assert labels == {"sac (a)", "sac (b)", "sdac"}


def test_vectorized_statistics_equal_rliable_functions():
    rng = np.random.default_rng(0)
    for runs_x, runs_y in ((5, 5), (3, 7)):
        x = rng.integers(0, 4, size=(runs_x, 3)).astype(float)  # small integers: many ties
        y = rng.integers(0, 4, size=(runs_y, 3)).astype(float)
        assert stats.probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))
    assert stats.probability_of_improvement(x, x) == pytest.approx(0.5)
    curves = rng.normal(size=(6, 4, 7))
    expected = [metrics.aggregate_iqm(curves[..., point]) for point in range(7)]
    assert stats.iqm_per_point(curves) == pytest.approx(expected)


def test_a_label_s_intervals_do_not_depend_on_the_other_labels():
    rng = np.random.default_rng(0)
    scores = {"sac": rng.normal(size=(5, 2)), "sdac": rng.normal(size=(5, 2))}
    _, together = stats.aggregate_estimates(scores, reps=50, seed=0)
    _, alone = stats.aggregate_estimates({"sdac": scores["sdac"]}, reps=50, seed=0)
    np.testing.assert_array_equal(together["sdac"], alone["sdac"])


def test_table_normalization_maps_random_to_zero_and_reference_to_one():
    frame = pd.DataFrame({"env_id": ["Hopper-v5", "Hopper-v5"], "return": [16.67, 2325.55]})
    scores = add_scores(frame, normalization(frame, "table"))["score"]
    assert scores.tolist() == pytest.approx([0.0, 1.0])
    minmax = add_scores(frame, normalization(frame, "minmax"))["score"]
    assert minmax.tolist() == [0.0, 1.0]
    with pytest.raises(ConfigError, match="minmax"):
        normalization(pd.DataFrame({"env_id": ["MountainCarContinuous-v0"], "return": [1.0]}), "table")


def test_final_return_table_bolds_the_best_and_shows_published_numbers(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "p", "sac", "Hopper-v5", seed, STEPS, [0, 1, 100 + seed])
        write_run(tmp_path, "p", "sdac", "Hopper-v5", seed, STEPS, [0, 1, 200 + seed])
    report = make_report([tmp_path / "p"], tmp_path / "out", ReportOptions(reps=20))
    markdown = (report.folder / "final_returns.md").read_text()
    assert "**201.0 ± " in markdown and "**101.0" not in markdown
    assert "sac: 2483 ± 943 (dacer_paper)" in markdown  # published SAC on Hopper, another protocol
    latex = (report.folder / "final_returns.tex").read_text()
    assert "\\toprule" in latex and "\\textbf{201.0 $\\pm$" in latex
    table = pd.read_csv(report.folder / "final_returns.csv").set_index("label")
    assert table.loc["sdac", "mean"] == pytest.approx(201.0) and table.loc["sdac", "n"] == 3
    assert "reference table version" in report.markdown.read_text()


def test_synthetic_grid_report_covers_every_algorithm_pair(tmp_path):
    write_grid(tmp_path, "grid", algos=3, envs=2, seeds=3, points=5, total_steps=1000)
    report = make_report([tmp_path / "grid"], tmp_path / "grid" / "report", ReportOptions(reps=20))
    pairs = pd.read_csv(report.folder / "probability_of_improvement.csv")
    assert len(pairs) == len(list(itertools.combinations(range(3), 2)))
    assert sorted(report.files) == sorted(report.folder.iterdir())  # the printed file count is every file written
    with open(report.folder / "cost.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 3 * 2


@pytest.mark.parametrize("args, message", [
    (["--normalize", "zscore"], "valid choices: table, minmax, none"),
    (["--table-error", "sem"], "valid choices: ci, std"),
    (["--reps", "0"], "argument --reps: must be >= 1, got 0"),
    (["--reps", "5", "--final"], "either --reps or --final"),
])
def test_bad_report_options_exit_2_and_name_the_choices(tmp_path, args, message):
    suite = write_hand_suite(tmp_path)
    result = bench_cli("report", str(suite), *args, results_dir=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (suite / "report").exists()


def test_report_on_a_missing_folder_exits_2(tmp_path):
    result = bench_cli("report", str(tmp_path / "nope"), results_dir=tmp_path)
    assert result.returncode == 2 and f"results folder {tmp_path / 'nope'}: does not exist" in result.stderr


def test_each_algorithm_keeps_its_colour_whatever_else_is_compared():
    from bench.report.plots import palette

    alone, crowded = palette(["sdac", "sac"]), palette(["cpql", "sac", "foo", "dacer", "sdac", "sdac (b)"])
    assert alone["sac"] == crowded["sac"] and alone["sdac"] == crowded["sdac"]
    assert len(set(crowded.values())) == len(crowded)  # variants and unknown algorithms get their own colour


def test_the_same_scores_and_bootstrap_seed_give_the_same_intervals_whatever_numpy_s_global_state():
    # rliable draws its resampling indices from np.random: bench.report.stats seeds it, and restores it afterwards.
    rng = np.random.default_rng(3)
    scores = {"sac": rng.normal(size=(5, 3)), "sdac": rng.normal(size=(5, 3)) + 0.3}
    curves = {label: rng.normal(size=(5, 3, 4)) for label in scores}

    def everything(seed):
        return (stats.aggregate_estimates(scores, 50, seed), stats.improvement_probabilities(scores, 50, seed),
                stats.curve_estimates(curves, 50, seed))

    first = everything(seed=0)
    np.random.seed(12345)
    before = np.random.get_state()[1].copy()
    second = everything(seed=0)
    assert (np.random.get_state()[1] == before).all()  # the caller's global stream is left where it was
    other_seed = everything(seed=1)
    for one, two, three in zip(first, second, other_seed):
        for label in one[1]:
            np.testing.assert_array_equal(one[1][label], two[1][label])
        assert any(not np.array_equal(one[1][label], three[1][label]) for label in one[1])


def test_train_metrics_joins_every_run_s_training_log_and_drops_a_line_cut_short(tmp_path):
    from bench.report.collect import train_metrics

    for algo in ("sac", "sdac"):
        run = write_run(tmp_path, "t", algo, "Hopper-v5", 0, STEPS, [0, 1, 2])
        metric = "alpha" if algo == "sac" else "weights/ess"
        (run / "train.csv").write_text(f"step,loss/critic,{metric}\n500,1.5,0.2\n1000,1.25,0.1\n1500,1.0")
    with pytest.warns(UserWarning, match="train.csv"):
        missing = write_run(tmp_path, "t", "dpmd", "Hopper-v5", 0, STEPS, [0, 1, 2])
        table = train_metrics(collect([tmp_path]).runs)
    assert not (missing / "train.csv").exists()
    assert list(table.columns[:5]) == ["label", "algo", "env_id", "seed", "step"]
    assert table.groupby("algo")["step"].apply(list).to_dict() == {"sac": [500, 1000], "sdac": [500, 1000]}
    assert table.loc[table.algo == "sac", "weights/ess"].isna().all()
    assert table.loc[table.algo == "sdac", "loss/critic"].tolist() == [1.5, 1.25]


def test_a_report_over_algorithms_run_under_different_protocols_warns_and_says_what_was_compared(tmp_path):
    results = tmp_path / "results"
    steps = [0, 100_000, 200_000]
    for seed in range(2):
        write_run(results, "mixed", "sac", "Hopper-v5", seed, steps, [10.0, 500.0, 900.0], protocol="standard",
                  preset="standard", planned_steps=200_000)
        write_run(results, "mixed", "sdac", "Hopper-v5", seed, steps, [10.0, 700.0, 1200.0], protocol="sdac-paper",
                  preset="sdac-paper", planned_steps=200_000)
    report = make_report([results / "mixed"], tmp_path / "report", ReportOptions(reps=20))
    protocol_warnings = [w for w in report.warnings if "different protocols" in w]
    assert len(protocol_warnings) == 1
    assert "sac: standard" not in protocol_warnings[0]  # names the setups, not only the labels
    assert "1 env(s), 1 updates per env step" in protocol_warnings[0]
    assert "5 env(s), 0.2 updates per env step" in protocol_warnings[0]
    assert any("different budgets of gradient updates" in w and "sac 190,000" in w and "sdac 34,000" in w
               for w in report.warnings)
    markdown = report.markdown.read_text()
    assert "**Warnings:**" in markdown and "## What was compared" in markdown
    compared = pd.read_csv(report.folder / "compared.csv").set_index("label")
    assert compared.loc["sac", "preset"] == "standard" and compared.loc["sdac", "preset"] == "sdac-paper"
    assert compared.loc["sac", "updates"] == 190_000 and compared.loc["sdac", "updates"] == 34_000


def test_runs_under_one_protocol_and_budget_get_no_comparison_warning(tmp_path):
    results = tmp_path / "results"
    for algo in ("sac", "sdac"):
        for seed in range(2):
            write_run(results, "same", algo, "Hopper-v5", seed, [0, 100_000, 200_000], [10.0, 500.0, 900.0 + seed],
                      protocol="sdac-paper", preset="sdac-paper", planned_steps=200_000)
    report = make_report([results / "same"], tmp_path / "report", ReportOptions(reps=20))
    assert not [w for w in report.warnings if "protocol" in w or "budget" in w]
