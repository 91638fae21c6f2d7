"""A DONE run whose files were damaged afterwards is never reported with a silent wrong number: `bench status`
marks it suspect, `bench collect` and `bench report` name the file and the discrepancy and leave it out unless
--include-suspect, and the check agrees with itself across damages of each file."""

import json

import pandas as pd
import pytest

from bench.jobs import RunDir
from bench.records.verify import verify_done
from bench.report.synthetic import write_run
from tests.helpers import bench_cli

STEPS = [0, 500, 1000]


def two_seeds(results):
    runs = [RunDir(write_run(results, "s", "sac", "Hopper-v5", seed, STEPS, [0.0, 50.0 + seed, 100.0 + seed]))
            for seed in (0, 1)]
    return runs


def drop_last_eval_row(run: RunDir) -> None:
    lines = run.eval_log.read_text().splitlines(keepends=True)
    run.eval_log.write_text("".join(lines[:-1]))


def test_an_intact_done_run_passes(tmp_path):
    run, _ = two_seeds(tmp_path)
    assert verify_done(run) == []


@pytest.mark.parametrize("damage, expected", [
    (drop_last_eval_row, "final_eval_return 100 but eval.csv's last row (step 500) holds 50"),
    (lambda run: run.eval_log.write_text(run.eval_log.read_text()[:-20]), "eval.csv: line 4 has"),
    (lambda run: run.eval_log.write_text(run.eval_log.read_text().replace("1000,", "x,")), "line 4 is not numeric"),
    (lambda run: run.summary_file.write_text("{"), "summary.json is not valid JSON"),
    (lambda run: run.summary_file.unlink(), "summary.json missing"),
    (lambda run: run.config_file.write_text("- a list"), "config.yaml is not a valid YAML mapping"),
    (lambda run: run.write_summary({**run.read_summary(), "final_eval_return": 7.0}),
     "final_eval_return 7 but eval.csv's last row (step 1000) holds 100"),
])
def test_each_damage_is_named_with_its_file(tmp_path, damage, expected):
    run, _ = two_seeds(tmp_path)
    damage(run)
    problems = verify_done(run)
    assert any(expected in problem for problem in problems), problems


def test_status_and_report_flag_a_damaged_done_run_and_leave_it_out(tmp_path):
    results = tmp_path / "results"
    damaged, intact = two_seeds(results)
    drop_last_eval_row(damaged)

    status = bench_cli("status", str(results / "s"), results_dir=results)
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if line.startswith("suspect:"))
    assert str(damaged.path) in line and "eval.csv" in line and "step 500" in line

    out = tmp_path / "report"
    report = bench_cli("report", str(results / "s"), "--out", str(out), "--normalize", "none", "--reps", "10",
                       results_dir=results)
    assert report.returncode == 0, report.stderr
    assert "Traceback" not in report.stdout + report.stderr
    assert f"suspect run (left out of every table and figure): {damaged.path}" in report.stdout
    assert "suspect run" in (out / "report.md").read_text()
    runs = pd.read_parquet(out / "runs.parquet")
    assert runs["seed"].tolist() == [1]  # the damaged seed 0 is in no table
    assert pd.read_parquet(out / "evals.parquet")["seed"].unique().tolist() == [1]

    included = bench_cli("collect", str(results / "s"), "--out", str(tmp_path / "all"), "--include-suspect",
                         results_dir=results)
    assert included.returncode == 0, included.stderr
    assert "included as asked (--include-suspect)" in included.stdout
    runs = pd.read_parquet(tmp_path / "all" / "runs.parquet").set_index("seed")
    assert runs.loc[0, "status"] == "suspect" and runs.loc[1, "status"] == "done"


def test_a_summary_edited_after_the_fact_is_flagged_too(tmp_path):
    run, _ = two_seeds(tmp_path)
    summary = json.loads(run.summary_file.read_text())
    run.summary_file.write_text(json.dumps({**summary, "final_eval_step": 2000}))
    assert verify_done(run) == ["summary.json final_eval_step 2000 but eval.csv ends at step 1000"]
