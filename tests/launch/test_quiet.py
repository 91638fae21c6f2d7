"""What a sweep prints into a log file (CI, SLURM, `> log`): one line per run per evaluation plus its start and
end, checkpoints only with -v, no padding to the console width; and a finished sweep is skipped without starting
a worker process."""

from bench.launch.progress import event_line
from tests.helpers import TINY, bench_cli

GRID = ["--algos", "sac", "--envs", "Pendulum", "--seeds", "2", "--workers", "2", "--device", "cpu",
        "--checkpoint-every", "100", *TINY]


def timestamped(output: str) -> list[str]:
    """The event lines: "HH:MM:SS <kind> ..." (tables and the plan are printed around them)."""
    return [line for line in output.splitlines() if line[:2].isdigit() and line[2:3] == ":"]


def test_log_output_is_one_line_per_evaluation_and_a_finished_sweep_starts_no_worker(results_dir):
    first = bench_cli("run", *GRID, results_dir=results_dir)
    assert first.returncode == 0, first.stdout + first.stderr
    lines = timestamped(first.stdout)
    kinds = [line.split()[1] for line in lines]
    # 300 steps, evaluations at 0, 100, 200, 300: four per run; a checkpoint every 100 steps, not shown
    assert sorted(kinds) == sorted(["start"] * 2 + ["eval"] * 8 + ["done"] * 2), lines
    assert not [line for line in first.stdout.splitlines() if line != line.rstrip()]
    assert not [line for line in first.stdout.splitlines() if line.startswith("all runs")]  # no bar in a file

    again = bench_cli("run", *GRID, "--plugin", "no_workers", results_dir=results_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [line.split(maxsplit=1)[1] for line in timestamped(again.stdout)] == [
        "skip   sac/Pendulum-v1/seed=0 (already DONE)", "skip   sac/Pendulum-v1/seed=1 (already DONE)"]


def test_checkpoint_lines_only_when_verbose():
    event = {"event": "checkpoint", "job": "sac/Pendulum-v1/seed=0", "step": 100, "seconds": 0.05}
    assert event_line(event) is None
    assert event_line(event, verbose=True) == "ckpt   sac/Pendulum-v1/seed=0 step 100 (0.05 s)"
    assert event_line({"event": "progress", "job": "x", "step": 5, "sps": 9.0}, verbose=True) is None
