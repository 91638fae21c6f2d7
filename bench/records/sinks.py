"""Metric sinks beside the CSV logs (``--log tensorboard,wandb``): every train.csv and eval.csv row, keyed by env
step, also sent to TensorBoard event files or to a W&B run.

The CSV logs stay the record. A sink that cannot start (package missing, no network, bad key) or fails mid-run
gives one notice and is dropped; the run goes on. On resume the CSV logs are cut back to the checkpoint's step
and the steps after it are trained and logged again, and a killed process takes with it what a sink had buffered
(TensorBoard's writer queue, wandb-core's unflushed transaction log). So each sink, when it opens, is replayed the
rows of the CSV logs as they stand and keeps only one copy of each step:

- TensorBoard: the earlier event files are purged from step 0 (a ``SessionLog.START`` at step 0, which TensorBoard's
  reader honours by hiding the older events) and the CSV rows are written again.
- W&B: the same W&B run (its id in ``wandb/bench-run.json``) is resumed, and only rows past the last step W&B
  already holds are logged: the server's, or offline, the last step found in the run's earlier ``.wandb`` files.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from algorithms.config import ConfigError
from bench.jobs import JobSpec, RunDir, write_json
from bench.records.csvlog import read_rows

SINKS = ("tensorboard", "wandb")
NO_SINK = "none"
STREAMS = ("train", "eval")  # train.csv, eval.csv: a column without a '/' is named '<stream>/<column>'
WANDB_PROJECT_ENV = "WANDB_PROJECT"
DEFAULT_WANDB_PROJECT = "diffrl-bench"
WANDB_FLUSH_SETTING, WANDB_FLUSH_SECONDS = "x_transaction_log_flush_interval", 2.0

Notice = Callable[[str], None]


def parse_log(value: str | Sequence[str] | None, where: str = "--log") -> tuple[str, ...]:
    """``"tensorboard,wandb"`` or a list of names -> the sink names; ``none`` (or nothing) -> no sink."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = []
    for item in items:
        name = str(item).strip().lower()
        if name in ("", NO_SINK):
            continue
        if name not in SINKS:
            raise ConfigError(f"{where}: unknown sink {str(item)!r}; valid choices: {', '.join(SINKS)}, {NO_SINK}")
        if name not in names:
            names.append(name)
    return tuple(names)


def metric_name(stream: str, column: str) -> str:
    """The name a CSV column gets in TensorBoard and W&B: ``eval/return_mean`` as it is, ``alpha`` as
    ``train/alpha``, and ``wall_time_s`` as ``train/wall_time_s`` or ``eval/wall_time_s``."""
    return column if "/" in column else f"{stream}/{column}"


def metric_values(stream: str, row: Mapping[str, Any]) -> dict[str, float]:
    """A row's numbers by metric name; the step is the x-axis, and an empty or NaN cell (no episode finished in
    the interval) is left out rather than drawn."""
    values = {}
    for column, value in row.items():
        if column == "step" or value is None or value == "":
            continue
        number = float(value)
        if math.isfinite(number):
            values[metric_name(stream, column)] = number
    return values


class Sink(Protocol):
    name: str

    def log(self, step: int, values: Mapping[str, float]) -> None: ...

    def close(self, exit_code: int) -> None: ...


class Sinks:
    """The sinks of one attempt. One that raises is closed, named in one notice and dropped."""

    def __init__(self, sinks: Sequence[Sink], notice: Notice) -> None:
        self.sinks = list(sinks)
        self.notice = notice

    def log(self, stream: str, row: Mapping[str, Any]) -> None:
        if not self.sinks:
            return
        step, values = int(row["step"]), metric_values(stream, row)
        for sink in list(self.sinks):
            try:
                sink.log(step, values)
            except Exception as error:  # noqa: BLE001 - a sink never stops the run
                self._drop(sink, f"failed at env step {step}", error)

    def close(self, exit_code: int = 0) -> None:
        for sink in self.sinks:
            try:
                sink.close(exit_code)
            except Exception as error:  # noqa: BLE001
                self.notice(f"--log {sink.name}: closing failed ({_describe(error)}); the CSV logs are complete")
        self.sinks = []

    def _drop(self, sink: Sink, when: str, error: BaseException) -> None:
        self.sinks.remove(sink)
        self.notice(f"--log {sink.name}: {when} ({_describe(error)}); no more rows go to it in this attempt, "
                    "the run goes on with its CSV logs")
        try:
            sink.close(1)
        except Exception:  # noqa: BLE001 - already reported
            pass


def open_sinks(names: Sequence[str], run: RunDir, job: JobSpec, notice: Notice) -> Sinks:
    """Start the named sinks and replay the CSV logs into them (nothing on a fresh start; on resume, the rows up to
    the checkpoint). A sink that cannot start gives its notice here and is left out."""
    opened = []
    for name in names:
        try:
            opened.append(OPENERS[name](run, job))
        except ImportError as error:
            notice(f"--log {name}: {error.name or name} is not installed ({_describe(error)}; "
                   f"pip install -e '.[{name}]'); the run goes on with its CSV logs")
        except Exception as error:  # noqa: BLE001 - no network, bad key, unwritable folder ...
            notice(f"--log {name}: could not start ({_describe(error)}); the run goes on with its CSV logs")
    sinks = Sinks(opened, notice)
    for stream, row in logged_rows(run) if opened else ():
        sinks.log(stream, row)
    return sinks


def logged_rows(run: RunDir) -> list[tuple[str, dict[str, str]]]:
    """train.csv and eval.csv as one sequence in the order they were written (train row first at a shared step)."""
    rows = [(stream, row) for stream, path in zip(STREAMS, (run.train_log, run.eval_log)) for row in read_rows(path)]
    return sorted(rows, key=lambda item: (int(item[1]["step"]), STREAMS.index(item[0])))


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


# TensorBoard -----------------------------------------------------------------------------------------------
class TensorBoardSink:
    name = "tensorboard"

    def __init__(self, run: RunDir, job: JobSpec) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        earlier = run.tensorboard_dir.is_dir() and any(run.tensorboard_dir.glob("events.out.tfevents.*"))
        # Purging from step 0 hides every earlier event: open_sinks writes the CSV rows again.
        self.writer = SummaryWriter(str(run.tensorboard_dir), purge_step=0 if earlier else None, flush_secs=10)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def close(self, exit_code: int) -> None:
        self.writer.close()


# Weights & Biases ------------------------------------------------------------------------------------------
class WandbSink:
    name = "wandb"

    def __init__(self, run: RunDir, job: JobSpec) -> None:
        import wandb

        run_id = wandb_run_id(run)
        self.run = wandb.init(
            project=os.environ.get(WANDB_PROJECT_ENV, DEFAULT_WANDB_PROJECT), dir=str(run.path), id=run_id,
            resume="allow", name=f"{job.suite}/{job.name}", group=f"{job.suite}/{job.algo}/{job.env_id}",
            job_type=job.algo, tags=[job.suite, job.algo, job.env_id], config=job.resolved_config(),
            settings=wandb.Settings(**wandb_settings(wandb)))
        try:
            self.held_through = self._held_through(run, run_id)
        except Exception:
            self.run.finish(exit_code=1)
            raise

    def _held_through(self, run: RunDir, run_id: str) -> int:
        """The last env step this W&B run already holds (-1: none). Online the server knows it; offline each
        attempt writes its own ``.wandb`` file, read back with W&B's reader."""
        if not self.run.offline:
            return self.run.starting_step - 1 if self.run.resumed else -1
        own = Path(self.run.settings.sync_file).resolve()
        earlier = [path for path in run.wandb_dir.glob(f"*-{run_id}*/run-{run_id}.wandb") if path.resolve() != own]
        return max([last_wandb_step(path) for path in earlier], default=-1)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        # W&B keeps steps increasing: a step it already holds (logged before a kill) is the same row again.
        if step > self.held_through and values:
            self.run.log(dict(values), step=step)

    def close(self, exit_code: int) -> None:
        self.run.finish(exit_code=exit_code)


def wandb_settings(wandb: Any) -> dict[str, Any]:
    """No console capture (the launcher's progress display owns the terminal) and no banner per run; the local
    ``.wandb`` file written every few seconds rather than every 15 (wandb's default), so that a killed attempt
    leaves more of its rows there (where the settings name still exists: it is a private one)."""
    settings: dict[str, Any] = {"console": "off", "silent": True}
    if WANDB_FLUSH_SETTING in getattr(wandb.Settings, "model_fields", {}):
        settings[WANDB_FLUSH_SETTING] = WANDB_FLUSH_SECONDS
    return settings


def wandb_run_id(run: RunDir) -> str:
    """The W&B run id of this bench run: stored at its first start, the same for every resume."""
    try:
        return str(json.loads(run.wandb_state.read_text())["id"])
    except (OSError, ValueError, KeyError, TypeError):
        run_id = uuid.uuid4().hex[:12]  # W&B ids: lower-case letters and digits
        run.wandb_dir.mkdir(parents=True, exist_ok=True)
        write_json(run.wandb_state, {"id": run_id})
        return run_id


def last_wandb_step(path: Path) -> int:
    """The largest history step in a ``.wandb`` transaction log, read by ``wandb leet inspect --json``."""
    result = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"wandb leet inspect {path}: {result.stderr.strip()[-300:]}")
    return max(wandb_history_steps(result.stdout), default=-1)


def wandb_history_steps(records_json: str) -> list[int]:
    """The step of every history record in ``wandb leet inspect --json`` output (one JSON record a line)."""
    steps = []
    for line in records_json.splitlines():
        if '"history"' not in line:
            continue
        record = json.loads(line)
        if record.get("type") == "history":
            steps.append(int(record["history"]["item"]["_step"]))
    return steps


OPENERS: dict[str, Callable[[RunDir, JobSpec], Sink]] = {"tensorboard": TensorBoardSink, "wandb": WandbSink}
