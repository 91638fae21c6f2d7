"""--log tensorboard,wandb: the event files and the W&B offline run hold the CSV rows, once each, after a SIGKILL and
a resume; a sink that cannot start gives one notice and the run still finishes."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench.jobs import RunDir
from bench.records.sinks import Sinks, metric_name, parse_log
from tests.helpers import TINY, bench_cli, bench_env

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")

STEPS, CKPT_EVERY = 1200, 400
ARGS = ["--algos", "sac", "--envs", "Pendulum", "--seeds", "1", "--preset", "none", "--protocol", "quick",
        "--steps", str(STEPS), "--warmup", "200", "--eval-every", "200", "--eval-episodes", "2",
        "--checkpoint-every", str(CKPT_EVERY), "--threads", "1", "--workers", "1", "-o", "hidden=32,32",
        "-o", "batch_size=32", "-o", "protocol.log_every=50", "--log", "tensorboard,wandb"]
OFFLINE = {"WANDB_MODE": "offline", "WANDB_PROJECT": "sinks-test"}


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def expected_metrics(run: Path) -> dict[str, dict[int, float]]:
    """metric name -> {step: value} from train.csv and eval.csv, the NaN/empty cells left out (as the sinks do)."""
    expected: dict[str, dict[int, float]] = {}
    for stream in ("train", "eval"):
        for row in csv_rows(run / f"{stream}.csv"):
            for column, text in row.items():
                if column != "step" and text != "" and math.isfinite(float(text)):
                    expected.setdefault(metric_name(stream, column), {})[int(row["step"])] = float(text)
    return expected


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def wandb_records(path: Path) -> list[dict]:
    """Every record of a .wandb transaction log, read by W&B's own reader."""
    result = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                            capture_output=True, text=True, timeout=120, check=True)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def history(records: list[dict]) -> list[dict]:
    return [record["history"]["item"] for record in records if record["type"] == "history"]


def train_row_steps(run: Path) -> list[int]:
    return [int(row["step"]) for row in csv_rows(run / "train.csv")] if (run / "train.csv").exists() else []


def wait_until(condition, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise TimeoutError("the background run did not get there")
        time.sleep(0.1)


def rows_past_checkpoint(run: Path) -> int:
    step = RunDir(run).checkpoint_step()
    return sum(row > step for row in train_row_steps(run)) if step else 0


def last_history_step(run: Path) -> int:
    fragments = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    steps = [item["_step"] for path in fragments for item in history(wandb_records(path))]
    return max(steps, default=-1)


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """One run SIGKILLed (wandb-core with it) once its W&B file holds rows past its checkpoint, then run to DONE.
    The training process is stopped (SIGSTOP) three log rows past the checkpoint while wandb-core writes those rows:
    the overlap that a resume must not log twice, at any machine speed."""
    results = tmp_path_factory.mktemp("sinks") / "results"
    run = results / "default" / "sac" / "Pendulum-v1" / "seed=0"
    process = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", *ARGS], env=bench_env(results, **OFFLINE),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            wait_until(lambda: rows_past_checkpoint(run) >= 3 or process.poll() is not None)
            assert process.poll() is None, "the run ended before it could be stopped past a checkpoint"
            trainer = json.loads((run / "RUNNING").read_text())["pid"]  # the pool's worker, not wandb-core
            os.kill(trainer, signal.SIGSTOP)
            # a W&B row is written once a later step is logged, and the last record sent may still sit in the
            # stopped process: three rows past the checkpoint put at least one past it in wandb-core's hands
            if rows_past_checkpoint(run) >= 3:
                break
            os.kill(trainer, signal.SIGCONT)  # it reached a new checkpoint meanwhile: wait past that one
        checkpoint_step = RunDir(run).checkpoint_step()
        wait_until(lambda: last_history_step(run) > checkpoint_step, timeout=60)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert not (run / "DONE").exists()
    resumed = bench_cli("run", *ARGS, results_dir=results, env=OFFLINE)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (run / "DONE").exists()
    assert f"resuming from last.pt at env step {checkpoint_step}" in (run / "run.log").read_text()
    return run, checkpoint_step


def test_tensorboard_events_equal_the_csv_rows_once_each_after_a_resume(killed_and_resumed):
    run, _ = killed_and_resumed
    scalars = tensorboard_scalars(run / "tensorboard")
    expected = expected_metrics(run)
    assert set(scalars) == set(expected)
    assert {"eval/return_mean", "train/episode_return", "loss/critic", "train/alpha", "time/sps"} <= set(scalars)
    for tag, points in scalars.items():
        steps = [step for step, _ in points]
        assert steps == sorted(expected[tag]), tag  # every step once, in order: the killed attempt's are purged
        # TensorBoard stores scalars as float32
        assert [value for _, value in points] == [np.float32(expected[tag][step]) for step in steps], tag


def test_wandb_offline_fragments_hold_every_step_once_with_the_run_config(killed_and_resumed):
    run, checkpoint_step = killed_and_resumed
    run_id = json.loads((run / "wandb" / "bench-run.json").read_text())["id"]
    fragments = sorted((run / "wandb").glob(f"offline-run-*-{run_id}*/run-{run_id}.wandb"))
    assert len(fragments) == 2  # one per attempt, both of the same W&B run
    killed, resumed = (wandb_records(path) for path in fragments)
    killed_steps = [item["_step"] for item in history(killed)]
    assert max(killed_steps) > checkpoint_step  # rows past the checkpoint reached W&B before the kill ...
    rows = history(killed) + history(resumed)
    steps = [item["_step"] for item in rows]
    assert len(steps) == len(set(steps))  # ... and were not logged again
    expected = expected_metrics(run)
    assert sorted(steps) == sorted({step for values in expected.values() for step in values})
    for item in rows:  # every row's values are the CSV's, whichever attempt logged it (timings aside)
        for name, value in item.items():
            if not name.startswith(("_", "time/", "mem/")) and not name.endswith("wall_time_s"):
                assert value == pytest.approx(expected[name][item["_step"]], rel=1e-12), (name, item["_step"])
    header = next(record["run"] for record in resumed if record["type"] == "run")
    assert header["run_id"] == run_id and header["resume"] is True
    assert header["run_group"] == "default/sac/Pendulum-v1" and header["project"] == "sinks-test"
    config = header["config"]["update"]
    assert config["protocol"]["total_steps"] == STEPS and config["execution"]["log"] == ["tensorboard", "wandb"]
    # recorded like the other execution settings
    assert yaml.safe_load((run / "config.yaml").read_text())["execution"]["log"] == ["tensorboard", "wandb"]
    assert yaml.safe_load((run.parents[2] / "sweep.yaml").read_text())["log"] == ["tensorboard", "wandb"]


def test_sinks_that_cannot_start_give_one_notice_each_and_the_run_finishes(tmp_path):
    # tensorboard made unimportable by a package of that name that raises, as a missing install does; W&B online
    # with a malformed key (and no reachable server)
    shadow = tmp_path / "shadow" / "tensorboard"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'tensorboard'\", "
                                        "name='tensorboard')\n")
    results = tmp_path / "results"
    env = {"WANDB_MODE": "online", "WANDB_API_KEY": "bad", "WANDB_BASE_URL": "http://127.0.0.1:9",
           "PYTHONPATH": os.pathsep.join([str(shadow.parent), bench_env(results)["PYTHONPATH"]])}
    result = bench_cli("run", "--algos", "sac", "--envs", "Pendulum", *TINY, "--workers", "1",
                       "--log", "tensorboard,wandb", results_dir=results, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    run = results / "default" / "sac" / "Pendulum-v1" / "seed=0"
    assert (run / "DONE").exists() and len(csv_rows(run / "eval.csv")) == 4
    notes = (run / "run.log").read_text().splitlines()
    assert len(notes) == 2, notes
    assert "--log tensorboard: tensorboard is not installed" in notes[0] and ".[tensorboard]" in notes[0]
    assert "--log wandb: could not start (AuthenticationError" in notes[1]
    assert "the run goes on with its CSV logs" in notes[1]
    assert "note" in result.stdout and "--log tensorboard" in result.stdout  # shown where the run is watched


def test_wandb_core_dying_mid_run_gives_one_notice_and_the_run_finishes(tmp_path):
    results = tmp_path / "results"
    run = results / "default" / "sac" / "Pendulum-v1" / "seed=0"
    args = ["--algos", "sac", "--envs", "Pendulum", *TINY, "--steps", "800", "--workers", "1", "--log", "wandb"]
    process = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", *args], env=bench_env(results, **OFFLINE),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until(lambda: len(train_row_steps(run)) >= 2)
    trainer = json.loads((run / "RUNNING").read_text())["pid"]
    children = Path(f"/proc/{trainer}/task/{trainer}/children").read_text().split()
    core = next(pid for pid in map(int, children) if "wandb-core" in Path(f"/proc/{pid}/cmdline").read_text())
    os.kill(core, signal.SIGKILL)  # as the OOM killer would
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out
    assert (run / "DONE").exists() and [int(s) for s in train_row_steps(run)][-1] == 800
    notes = (run / "run.log").read_text().splitlines()
    assert len(notes) == 1 and "--log wandb: failed at env step" in notes[0], notes
    assert "no more rows go to it in this attempt, the run goes on with its CSV logs" in notes[0]


class FailsOnSecondRow:
    name = "flaky"

    def __init__(self) -> None:
        self.logged, self.closed = [], None

    def log(self, step, values):
        if self.logged:
            raise OSError("disk full")
        self.logged.append(step)

    def close(self, exit_code):
        self.closed = exit_code


def test_a_sink_failing_mid_run_is_dropped_with_one_notice():
    sink, notices = FailsOnSecondRow(), []
    sinks = Sinks([sink], notices.append)
    for step in (100, 200, 300):
        sinks.log("train", {"step": step, "updates": step, "train/episode_return": "nan"})
    sinks.close()
    assert sink.logged == [100] and sink.closed == 1
    assert notices == ["--log flaky: failed at env step 200 (OSError: disk full); no more rows go to it in this "
                       "attempt, the run goes on with its CSV logs"]


def test_log_names_are_checked_with_the_valid_choices(tmp_path):
    assert parse_log("TensorBoard, wandb,tensorboard") == ("tensorboard", "wandb")
    assert parse_log("none") == () and parse_log(["wandb"]) == ("wandb",)
    result = bench_cli("run", "--algos", "sac", "--envs", "Pendulum", *TINY, "--log", "tensorbord", "--dry-run",
                       results_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --log: unknown sink 'tensorbord'; valid choices: tensorboard, wandb, "
                                     "none")
