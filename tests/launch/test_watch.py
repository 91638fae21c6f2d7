"""`bench status --watch` on a running run: its step, last evaluation return, speed and ETA, refreshed; Ctrl-C stops the
watching (one line, no traceback) and not the run; with nothing running it prints once and ends."""

import re
import signal
import subprocess
import sys
import time

from bench.jobs import RunDir
from bench.launch.watch import duration
from tests.helpers import bench_cli, bench_env

ARGS = ["--algos", "sac", "--envs", "Pendulum", "--preset", "none", "--protocol", "quick", "--steps", "10000",
        "--warmup", "100", "--eval-every", "100", "--eval-episodes", "1", "-o", "protocol.log_every=50",
        "-o", "batch_size=32", "-o", "hidden=32,32", "--threads", "1", "--workers", "1"]


def test_watch_shows_the_running_run_and_ctrl_c_stops_only_the_watching(tmp_path):
    results = tmp_path / "results"
    run = RunDir(results / "default" / "sac" / "Pendulum-v1" / "seed=0")
    training = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", *ARGS], env=bench_env(results),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while not (run.eval_log.exists() and run.eval_log.read_text().count("\n") >= 3):  # header + 2 evaluations
            assert time.time() < deadline and training.poll() is None, "the run did not reach its second evaluation"
            time.sleep(0.2)
        watcher = subprocess.Popen([sys.executable, "-m", "bench.cli", "status", "--watch", str(results), "--every", "0.5"],
                                   env=bench_env(results), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = []
        while sum("running: 1 (" in line for line in seen) < 2:  # two refreshes printed (after imports, ~seconds)
            line = watcher.stdout.readline()
            assert line, "the watch ended before refreshing twice"
            seen.append(line)
        watcher.send_signal(signal.SIGINT)
        rest, err = watcher.communicate(timeout=60)
        out = "".join(seen) + rest
        assert watcher.returncode == 0, out + err
        assert training.poll() is None  # the run goes on
    finally:
        training.send_signal(signal.SIGTERM)  # checkpointed and stopped: no need to train it to the end
        training.wait(timeout=300)
    assert "Traceback" not in out + err and err == ""
    assert out.rstrip().splitlines()[-1] == "stopped watching (the runs go on)"
    assert out.count("running: 1 (1 running)") >= 2  # refreshed
    row = next(line for line in out.splitlines() if "default/sac/Pendulum-v1/seed=0" in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    step, total = (int(text.replace(",", "")) for text in cells[1].split("/"))
    assert 0 < step < total == 10000  # long enough that the SIGTERM below always finds it running
    assert re.fullmatch(r"-?\d+\.\d \(step \d+\)", cells[2])  # the last evaluation's mean return
    assert float(cells[3].replace(",", "")) > 0 and re.fullmatch(r"\d+m \d\ds", cells[4])
    after = bench_cli("status", "--watch", str(results), "--every", "1", results_dir=results, timeout=60)
    assert after.returncode == 0 and after.stdout.rstrip().endswith("no run is running: stopped watching")
    assert "running: 0 (1 interrupted)" in after.stdout


def test_eta_reads_as_hours_and_minutes():
    assert duration(None) == "-" and duration(59.6) == "1m 00s" and duration(3 * 3600 + 125) == "3h 02m"
