"""The contract every wing shares: what a run is (:class:`JobSpec`), where it lives (:class:`RunDir`, :class:`SuiteDir`)
and the words for its state (:class:`RunState`, :class:`Outcome`, :class:`AttemptOutcome`).

    results/<suite>/                 SuiteDir
        sweep.yaml                   the resolved sweep spec and the runs it planned (bench run)
        slurm/                       submissions and code snapshots (bench.launch.slurm)
        report/                      bench report's default output
        <algo>/<env_id>/seed=<k>/    RunDir
            config.yaml     resolved config (algorithm + protocol + identity), written before training starts
            manifest.json   versions, git commit, host, CPU/GPU, start and end times
            train.csv       append-only training log, fixed columns, one row every `log_every` env steps
            eval.csv        append-only evaluation log, fixed columns, one row per scheduled evaluation
            summary.json    final/best eval return, wall-clock, speed, peak memory, resumes, status
            error.txt       traceback of a failed run
            attempts.json   one entry per attempt (start, last sign of life, steps, outcome)
            run.log         notices: resumes, fallbacks, dropped rows
            RUNNING         host and pid of the process running it now
            checkpoint.json, ckpt/, replay/   see bench.train.checkpoint
            tensorboard/    TensorBoard event files (--log tensorboard), the same numbers as the CSV logs
            wandb/          W&B's local run files (--log wandb); wandb/bench-run.json holds the W&B run id
            DONE            written last: the run finished and every file above is complete
            PRUNED          a tuning trial's pruner stopped the run: final, like DONE (holds the reason)

Every file name of a run lives here and nowhere else; docs/results-format.md describes the columns for users.
Plain data and the standard library only: every wing imports this module, so it imports no wing.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

RESULTS_ENV_VAR = "BENCH_RESULTS_DIR"
DEFAULT_PROTOCOL = "sdac-paper"


class _Word(str, Enum):
    """A state word: compares equal to its text, and prints and serialises as it (JSON, f-strings)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __hash__(self) -> int:  # Enum hashes the member name; a word must find "done" keys too
        return hash(self.value)


class RunState(_Word):
    """What a run directory says about its run (``bench status``, the report's reader, SLURM submission)."""

    DONE = "done"
    SUSPECT = "suspect"          # DONE, but its files disagree (bench.records.verify); left out of reports
    PRUNED = "pruned"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    PENDING = "pending"          # not started; its SLURM task waits in the queue
    NOT_STARTED = "not started"


class Outcome(_Word):
    """What one call of ``run_one`` did (the ``status`` of the summary it returns)."""

    DONE = "done"
    SKIPPED = "skipped"          # DONE before the call
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # a stop signal: checkpointed, resumable
    BUSY = "busy"                # another live process holds the run
    PRUNED = "pruned"


class AttemptOutcome(_Word):
    """The end of one attempt in ``attempts.json``."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    KILLED = "killed"            # its process died without a word (SIGKILL, node failure)
    PRUNED = "pruned"


def default_results_root() -> Path:
    return Path(os.environ.get(RESULTS_ENV_VAR, "results"))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# Write faults: named by the path they hit ------------------------------------------------------------------
_FAULT_WORDS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied", errno.EROFS: "read-only file system", errno.EIO: "I/O error"}


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Attach ``path`` to an OSError raised inside: a failed write() or flush() carries no file name, and "No space
    left on device" without the path does not say which disk."""
    try:
        yield
    except OSError as error:
        if error.filename is None and error.errno:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def describe_fault(error: BaseException) -> str | None:
    """``disk full at <path>`` (permission denied, read-only file system, ...) for a filesystem fault; None for
    anything else."""
    if not isinstance(error, OSError) or error.errno not in _FAULT_WORDS:
        return None
    where = f" at {error.filename}" if error.filename else ""
    return f"{_FAULT_WORDS[error.errno]}{where}"


# Atomic writes: readers (status, reports, a resuming run) never see a half-written file -----------------------
def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file beside ``path`` and rename it over ``path``; on any failure the temporary file
    is removed and ``path`` is as it was."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with writing(path):
            tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_yaml(path: Path, data: Mapping[str, Any], header: str = "") -> None:
    write_text_atomic(path, header + yaml.safe_dump(_plain(data), sort_keys=False))


def _plain(data: Any) -> Any:
    """State words as their text (yaml.safe_dump knows str, not a str Enum)."""
    if isinstance(data, Mapping):
        return {str(key): _plain(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(value) for value in data]
    return data.value if isinstance(data, Enum) else data


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: ~10x faster when reports read many runs


def read_yaml_mapping(path: Path) -> dict[str, Any] | None:
    """A YAML file's top-level mapping, or None when it is missing, unparsable or not a mapping."""
    try:
        data = yaml.load(Path(path).read_text(), Loader=SAFE_LOADER)
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


# Identity of a run -----------------------------------------------------------------------------------------
IDENTITY_SECTIONS = ("suite", "algo", "env_id", "seed", "protocol", "agent")  # not "execution": threads etc.


def config_differences(on_disk: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """``key: on disk X, requested Y`` for every differing leaf of the sections that define the experiment."""
    left = _flatten({key: on_disk.get(key) for key in IDENTITY_SECTIONS})
    right = _flatten({key: requested.get(key) for key in IDENTITY_SECTIONS})
    return [f"{key}: on disk {left.get(key)!r}, requested {right.get(key)!r}"
            for key in sorted(set(left) | set(right)) if left.get(key) != right.get(key)]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


# A Gymnasium namespace ("dm_control/cheetah-run-v0") would nest one folder deeper than the layout has; the env's
# folder spells the slash as this, and reading the folder back turns it into the slash again.
NAMESPACE_IN_FOLDER = "__"


def env_folder(env_id: str) -> str:
    """``dm_control/cheetah-run-v0`` -> ``dm_control__cheetah-run-v0``; ids without a namespace are unchanged."""
    return env_id.replace("/", NAMESPACE_IN_FOLDER)


def env_from_folder(folder: str) -> str:
    return folder.replace(NAMESPACE_IN_FOLDER, "/")


def run_name(algo: str, env_id: str, seed: int) -> str:
    """``algo/env_folder/seed=k``: a run's name inside its suite, which is also its path below the suite folder
    (progress lines, sweep.yaml, SLURM records)."""
    return f"{algo}/{env_folder(env_id)}/seed={seed}"


_SEED_FOLDER = re.compile(r"seed=(-?\d+)")


# The suite folder ------------------------------------------------------------------------------------------
class _Folder:
    """A folder of results, equal to another of its kind at the same path (usable as a dict key and as a path)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.path == other.path  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.path)


class SuiteDir(_Folder):
    """``results/<suite>/``: the runs of one suite and what is written about them as a whole."""

    SWEEP_FILE = "sweep.yaml"
    SLURM_FOLDER = "slurm"
    REPORT_FOLDER = "report"

    @classmethod
    def at(cls, results_root: Path | str, suite: str) -> "SuiteDir":
        return cls(Path(results_root) / suite)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def sweep_file(self) -> Path:
        return self.path / self.SWEEP_FILE

    @property
    def slurm_dir(self) -> Path:
        return self.path / self.SLURM_FOLDER

    @property
    def report_dir(self) -> Path:
        return self.path / self.REPORT_FOLDER

    def run(self, algo: str, env_id: str, seed: int) -> "RunDir":
        return RunDir(self.path / run_name(algo, env_id, seed))

    def run_named(self, name: str) -> "RunDir":
        """The run dir of a run name (``algo/env_id/seed=k``)."""
        return RunDir(self.path / name)

    def planned_runs(self) -> list[str]:
        """Run names of the last sweep launched into this suite (its ``sweep.yaml``); [] if none is recorded."""
        data = read_yaml_mapping(self.sweep_file) or {}
        runs = data.get("runs")
        return [str(run) for run in runs] if isinstance(runs, list) else []


# The run folder --------------------------------------------------------------------------------------------
def _named(*parts: str) -> property:
    """A path below the run folder, as a read-only attribute."""
    return property(lambda self: self.path.joinpath(*parts))


class RunDir(_Folder):
    """``results/<suite>/<algo>/<env_id>/seed=<k>/``: its files by name, its identity, its attempts."""

    CONFIG = "config.yaml"
    MANIFEST = "manifest.json"
    TRAIN_LOG = "train.csv"
    EVAL_LOG = "eval.csv"
    SUMMARY = "summary.json"
    ERROR = "error.txt"
    ATTEMPTS = "attempts.json"
    NOTES = "run.log"
    LOCK = "RUNNING"
    DONE_MARKER = "DONE"
    PRUNED_MARKER = "PRUNED"
    CHECKPOINT_INFO = "checkpoint.json"
    CHECKPOINT_FOLDER = "ckpt"
    REPLAY_FOLDER = "replay"
    TENSORBOARD_FOLDER = "tensorboard"
    WANDB_FOLDER = "wandb"  # wandb.init(dir=<run>) writes here by its own choice of name
    WANDB_STATE = "bench-run.json"
    SPACE_RESERVE = ".space-reserve"
    SPACE_RESERVE_BYTES = 64 * 1024  # room for error.txt, attempts.json and summary.json when the disk is full
    # What this harness writes (not RUNNING: that is the live owner's); clear() removes exactly these.
    RECORD_FILES = (CONFIG, MANIFEST, EVAL_LOG, TRAIN_LOG, SUMMARY, ERROR, DONE_MARKER, PRUNED_MARKER, ATTEMPTS,
                    NOTES, CHECKPOINT_INFO, SPACE_RESERVE)
    HISTORY_FILES = (ATTEMPTS, NOTES)  # kept when a run starts over from step 0: every attempt stays on record
    RECORD_FOLDERS = (CHECKPOINT_FOLDER, REPLAY_FOLDER, TENSORBOARD_FOLDER, WANDB_FOLDER)

    def __init__(self, path: Path | str) -> None:
        super().__init__(path)
        # Identity from the layout, parsed once; config.yaml (when readable) is the authority over it.
        match = _SEED_FOLDER.fullmatch(self.path.name)
        self.seed = int(match[1]) if match else -1
        self.env_id = env_from_folder(self.path.parent.name)
        self.algo = self.path.parent.parent.name
        self.suite_dir = SuiteDir(self.path.parent.parent.parent)
        self.suite = self.suite_dir.name

    @classmethod
    def at(cls, results_root: Path | str, suite: str, algo: str, env_id: str, seed: int) -> "RunDir":
        return SuiteDir.at(results_root, suite).run(algo, env_id, seed)

    @property
    def name(self) -> str:
        """``algo/env_id/seed=k``."""
        return run_name(self.algo, self.env_id, self.seed)

    @property
    def looks_like_run(self) -> bool:
        """A ``seed=<k>`` folder or one holding a config: what discovery and `bench status PATH` accept."""
        return self.config_file.exists() or _SEED_FOLDER.fullmatch(self.path.name) is not None

    # Named paths -------------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    config_file = _named(CONFIG)
    manifest_file = _named(MANIFEST)
    train_log = _named(TRAIN_LOG)
    eval_log = _named(EVAL_LOG)
    summary_file = _named(SUMMARY)
    error_file = _named(ERROR)
    attempts_file = _named(ATTEMPTS)
    notes_file = _named(NOTES)
    lock_file = _named(LOCK)
    done_marker = _named(DONE_MARKER)
    pruned_marker = _named(PRUNED_MARKER)
    checkpoint_info = _named(CHECKPOINT_INFO)
    checkpoint_dir = _named(CHECKPOINT_FOLDER)
    last_checkpoint = _named(CHECKPOINT_FOLDER, "last.pt")
    previous_checkpoint = _named(CHECKPOINT_FOLDER, "prev.pt")
    replay_dir = _named(REPLAY_FOLDER)
    tensorboard_dir = _named(TENSORBOARD_FOLDER)
    wandb_dir = _named(WANDB_FOLDER)
    wandb_state = _named(WANDB_FOLDER, WANDB_STATE)

    # Final markers -----------------------------------------------------------------------------------
    @property
    def is_done(self) -> bool:
        return self.done_marker.exists()

    @property
    def is_pruned(self) -> bool:
        return self.pruned_marker.exists()

    def mark_done(self) -> None:
        with writing(self.done_marker):
            self.done_marker.write_text(now_iso() + "\n")

    def mark_pruned(self, detail: str) -> None:
        self.pruned_marker.write_text(detail + "\n")

    def pruned_detail(self) -> str:
        return self.pruned_marker.read_text().strip()

    # Config, manifest, summary, error ----------------------------------------------------------------
    def read_config(self) -> dict[str, Any] | None:
        """config.yaml, or None when there is none or it cannot be parsed (then the run restarts)."""
        return read_yaml_mapping(self.config_file)

    def write_config(self, config: Mapping[str, Any]) -> None:
        write_yaml(self.config_file, config)

    def read_summary(self) -> dict[str, Any]:
        return read_json(self.summary_file)

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        write_json(self.summary_file, dict(summary))

    def read_manifest(self) -> dict[str, Any]:
        return read_json(self.manifest_file) if self.manifest_file.exists() else {}

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        write_json(self.manifest_file, dict(manifest))

    def write_error(self, text: str) -> None:
        write_text_atomic(self.error_file, text)  # never an empty error.txt: a full disk fails before the rename

    def error_last_line(self) -> str:
        lines = [line for line in self.error_file.read_text().splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def checkpoint_step(self) -> int | None:
        """Env step of the newest checkpoint (checkpoint.json), None without one."""
        try:
            return int(read_json(self.checkpoint_info)["step"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def note(self, message: str) -> None:
        """A line in run.log: resumes, fallbacks, dropped rows."""
        with writing(self.notes_file), open(self.notes_file, "a") as handle:
            handle.write(f"{now_iso()} {message}\n")

    # Attempts ----------------------------------------------------------------------------------------
    def attempts(self) -> list[dict[str, Any]]:
        try:
            attempts = read_json(self.attempts_file)
        except (OSError, ValueError):
            return []
        return attempts if isinstance(attempts, list) else []

    def write_attempts(self, attempts: list[dict[str, Any]]) -> None:
        write_json(self.attempts_file, attempts)

    def start_attempt(self, step: int, host: str, slurm_job: str | None, slurm_restart: int) -> None:
        """Append a running attempt; an earlier one still marked running died without a word."""
        attempts = self.attempts()
        for attempt in attempts:
            if attempt["outcome"] == AttemptOutcome.RUNNING:
                attempt["outcome"] = AttemptOutcome.KILLED
        now = time.time()
        attempts.append({"started": now, "last_alive": now, "start_step": step, "end_step": step, "host": host,
                         "slurm_job": slurm_job, "slurm_restart": slurm_restart,
                         "outcome": AttemptOutcome.RUNNING})
        self.write_attempts(attempts)

    def heartbeat(self, step: int, outcome: AttemptOutcome = AttemptOutcome.RUNNING) -> None:
        """The last attempt's sign of life (also what `is_running` reads for runs on other hosts)."""
        attempts = self.attempts()
        attempts[-1].update(last_alive=time.time(), end_step=step, outcome=outcome)
        self.write_attempts(attempts)

    def close_running_attempt(self, outcome: AttemptOutcome, cause: str | None = None) -> None:
        """End the last attempt with ``outcome`` (and what caused it) if it is still marked running (a crash path)."""
        attempts = self.attempts()
        if attempts and attempts[-1]["outcome"] == AttemptOutcome.RUNNING:
            attempts[-1].update(last_alive=time.time(), outcome=outcome)
            if cause:
                attempts[-1]["cause"] = cause
            self.write_attempts(attempts)

    def resumes(self) -> int:
        """Attempts that continued from a checkpoint since the run last started from step 0."""
        attempts = self.attempts()
        fresh = [index for index, attempt in enumerate(attempts) if attempt.get("start_step") == 0]
        return len(attempts) - 1 - (fresh[-1] if fresh else 0) if attempts else 0

    def wall_time(self) -> float:
        """Seconds of all attempts, each from its start to its last sign of life (work lost to a kill included)."""
        return sum(max(0.0, a["last_alive"] - a["started"]) for a in self.attempts())

    # Clean-up ----------------------------------------------------------------------------------------
    def clear(self, keep_history: bool = False) -> None:
        """Remove everything a previous attempt wrote, to start over (only what this harness writes; anything a
        user put there stays). ``keep_history`` keeps attempts.json and run.log (a restart from step 0, as opposed
        to --overwrite)."""
        for name in self.RECORD_FILES:
            if not (keep_history and name in self.HISTORY_FILES):
                self.file(name).unlink(missing_ok=True)
        for name in self.RECORD_FOLDERS:
            shutil.rmtree(self.file(name), ignore_errors=True)

    def remove_finished_state(self) -> None:
        """Drop what only a resume needs (the replay data: GBs for large tasks; the previous checkpoint).
        The final agent state stays in ckpt/last.pt."""
        shutil.rmtree(self.replay_dir, ignore_errors=True)
        self.previous_checkpoint.unlink(missing_ok=True)
        self.free_space_reserve()

    def reserve_space(self) -> None:
        """Hold SPACE_RESERVE_BYTES on the run's disk while it trains, so that a run stopped by a full disk can still
        say so (error.txt, attempts.json, summary.json) once :meth:`free_space_reserve` gives them back."""
        path = self.file(self.SPACE_RESERVE)
        if path.exists() and path.stat().st_size == self.SPACE_RESERVE_BYTES:
            return
        try:
            with writing(path), open(path, "wb") as handle:
                handle.write(os.urandom(self.SPACE_RESERVE_BYTES))  # zeros may be stored as a hole (ZFS, btrfs)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def free_space_reserve(self) -> None:
        self.file(self.SPACE_RESERVE).unlink(missing_ok=True)


def as_run_dir(run: "RunDir | Path | str") -> "RunDir":
    return run if isinstance(run, RunDir) else RunDir(run)


# A run to do -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobSpec:
    """One run (algorithm x env x seed). Plain data: it crosses process and cluster boundaries."""

    algo: str
    env_id: str
    seed: int
    suite: str
    protocol: dict[str, Any]
    agent_config: dict[str, Any]
    run_dir: str
    protocol_name: str = DEFAULT_PROTOCOL
    preset: str | None = None  # the preset the config was planned under (a name; not part of the identity)
    device: str = "cpu"
    torch_threads: int = 1
    argv: tuple[str, ...] = field(default_factory=tuple)
    plugins: tuple[str, ...] = field(default_factory=tuple)
    checkpoint_every: int | None = None  # env steps; None: every 5 % of the budget; 0: never
    log: tuple[str, ...] = ()  # metric sinks beside the CSV logs (bench.records.sinks.SINKS)
    compile: str | None = None  # torch.compile mode of the agent's hot paths (algorithms.compiled); None: eager

    @property
    def name(self) -> str:
        return run_name(self.algo, self.env_id, self.seed)

    @property
    def directory(self) -> RunDir:
        return RunDir(self.run_dir)

    def identity(self) -> dict[str, Any]:
        return {"suite": self.suite, "algo": self.algo, "env_id": self.env_id, "seed": self.seed}

    def resolved_config(self) -> dict[str, Any]:
        """What config.yaml holds: identity, protocol, the algorithm's full config, execution settings."""
        return {
            **self.identity(), "preset": self.preset, "protocol_name": self.protocol_name,
            "protocol": dict(self.protocol),
            "agent": dict(self.agent_config),
            "execution": {"device": self.device, "torch_threads": self.torch_threads,
                          "checkpoint_every": self.checkpoint_every, "log": list(self.log),
                          "compile": self.compile},
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
