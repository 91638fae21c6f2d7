"""Which run directories a reader sees: the runs that started. Runs a sweep planned but has not started are
`bench status`'s (not started), never the report's (they used to be warned about as unreadable)."""

from bench.jobs import RunState, SuiteDir
from bench.launch.status import rows_for, status_run_dirs
from bench.plan.spec import SweepSpec, save_resolved
from bench.records.discover import find_run_dirs
from bench.report.collect import collect
from bench.report.synthetic import write_run
from tests.helpers import bench_cli


def partly_started_sweep(results):
    """A sweep of two seeds saved as `bench run` saves it; only seed 0 has run."""
    spec = SweepSpec(name="half", algos=["sac"], envs=["Pendulum"], seeds=[0, 1], protocol="quick")
    jobs = spec.expand(results)
    save_resolved(spec, jobs, SuiteDir.at(results, "half"))
    write_run(results, "half", "sac", "Pendulum-v1", 0, [0, 100, 200], [-1500.0, -900.0, -400.0])
    return jobs


def test_a_planned_run_that_has_not_started_is_status_business_not_the_reports(tmp_path):
    results = tmp_path / "results"
    jobs = partly_started_sweep(results)
    started = find_run_dirs(results / "half")
    assert [run.name for run in started] == [jobs[0].name]
    assert {run.name: row.state for run, row in zip(status_run_dirs(results / "half"),
                                                   rows_for(status_run_dirs(results / "half")))} == {
        jobs[0].name: RunState.DONE, jobs[1].name: RunState.NOT_STARTED}
    collected = collect([results / "half"])
    assert collected.skipped == [] and len(collected.runs) == 1


def test_bench_report_on_a_partly_started_sweep_warns_about_nothing(tmp_path):
    results = tmp_path / "results"
    partly_started_sweep(results)
    report = bench_cli("report", str(results / "half"), results_dir=results)
    assert report.returncode == 0, report.stderr
    assert "unreadable" not in report.stdout + report.stderr
    status = bench_cli("status", str(results / "half"), results_dir=results)
    assert "not started" in status.stdout and "seed=1" in status.stdout
