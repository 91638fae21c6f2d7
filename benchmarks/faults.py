"""Fault-injection campaign: real faults against real `bench run` commands, then the same command again; one table.

    python benchmarks/faults.py [--trials 3] [--steps 400] [--seed 0] [--dir /tmp/faults] [--only KIND,KIND]

Every trial uses SAC on Pendulum (hidden 32x32, batch 32, a checkpoint every 100 env steps, one thread) and is
compared with an uninterrupted run of the same seed. The faults, at random moments after a run's first checkpoint:

    worker SIGKILL          one worker of a 2-worker sweep of 2 runs (what the OOM killer does)
    launcher SIGKILL        the `bench run` process itself, while its 2 workers train
    damaged last.pt         an interrupted run's newest checkpoint: truncated, or a block of bytes changed
    damaged both ckpts      last.pt and prev.pt both damaged
    damaged replay file     one of replay/*.npy truncated, or its header overwritten
    disk full               a 16 MB tmpfs filled up while the run trains (needs root to mount; skipped otherwise)
    concurrent launches     the same 2-run command started twice at once on one suite
    damaged DONE records    a finished run's eval.csv (last row cut, or its return changed) or summary.json
                            (final return changed, or the file gone), then `bench status` and `bench report`;
                            recovered = `--overwrite` (what the status line advises) trains it again identically

Each trial is counted in these columns (a trial can count in several):

    recovered bit-identically  after the fault (and space freed, for a full disk) the same command once more
                               leaves every run DONE with eval.csv (all but wall time) and the final agent's
                               parameters equal to the uninterrupted run's
    flagged                    the fault was reported where a user looks: the failed run named with the real cause
                               ("killed (signal 9 ...", "disk full at <path>"), a notice naming the damaged file,
                               the orphaned runs stopped and shown `interrupted`, a run left alone shown `busy`
    lost                       a run not DONE after the re-run, or a healthy run that the fault took down
    misreported                a run reported DONE whose results differ from the uninterrupted run's, a process of
                               a killed sweep still alive 15 s later, a run trained twice, or a fault not reported
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.jobs import RunDir  # noqa: E402
from bench.records.state import run_status  # noqa: E402


class Missed(Exception):
    """The run finished before the fault landed: the trial is run again."""


@dataclass
class Trial:
    recovered: bool = False
    flagged: bool = False
    lost: bool = False
    misreported: bool = False


class Campaign:
    def __init__(self, root: Path, steps: int, rng: random.Random) -> None:
        self.root, self.steps, self.rng = root, steps, rng
        self.count = 0
        self.references: dict[int, Path] = {}
        self.orphan_seconds: list[float] = []  # launcher SIGKILL -> its last child gone

    # Commands --------------------------------------------------------------------------------------------------
    def args(self, seeds: int, workers: int, suite: str) -> list[str]:
        return ["run", "--algos", "sac", "--envs", "Pendulum", "--preset", "none", "--protocol", "quick",
                "--steps", str(self.steps), "--warmup", "100", "--eval-every", "100", "--eval-episodes", "2",
                "--checkpoint-every", "100", "--threads", "1", "-o", "protocol.log_every=100",
                "-o", "batch_size=32", "-o", "hidden=32,32", "--seeds", str(seeds), "--workers", str(workers),
                "--suite", suite]

    def env(self, results: Path) -> dict:
        return {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_RESULTS_DIR": str(results)}

    def start(self, results: Path, suite: str, seeds: int = 1, workers: int = 1) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "bench.cli", *self.args(seeds, workers, suite)],
                                env=self.env(results), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)

    def run(self, results: Path, suite: str, seeds: int = 1, workers: int = 1) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bench.cli", *self.args(seeds, workers, suite)],
                              env=self.env(results), capture_output=True, text=True, timeout=1800)

    def fresh(self, name: str) -> Path:
        """``<root>/<name>-<n>/results`` in a folder of its own (created)."""
        self.count += 1
        folder = self.root / f"{name.replace(' ', '-')}-{self.count}"
        folder.mkdir(parents=True)
        return folder / "results"

    @staticmethod
    def run_dir(results: Path, suite: str, seed: int) -> Path:
        return results / suite / "sac" / "Pendulum-v1" / f"seed={seed}"

    # Comparison with the uninterrupted run ----------------------------------------------------------------------
    def reference(self, seed: int) -> Path:
        if seed not in self.references:
            results = self.root / "reference" / "results"
            done = self.run(results, "ref", seeds=2, workers=1)
            assert done.returncode == 0, done.stdout + done.stderr
            for known in (0, 1):
                self.references[known] = self.run_dir(results, "ref", known)
        return self.references[seed]

    def identical(self, directory: Path, seed: int) -> bool:
        reference = self.reference(seed)
        if not (directory / "DONE").exists():
            return False
        return (_eval_rows(directory) == _eval_rows(reference)
                and _same(_final_agent(directory), _final_agent(reference)))

    def settle(self, results: Path, suite: str, seeds: int, trial: Trial, workers: int = 1) -> None:
        """The same command once more; then every run must be DONE and identical to the uninterrupted one."""
        again = self.run(results, suite, seeds=seeds, workers=workers)
        directories = [self.run_dir(results, suite, seed) for seed in range(seeds)]
        trial.lost |= again.returncode != 0 or not all((d / "DONE").exists() for d in directories)
        same = [self.identical(d, seed) for seed, d in enumerate(directories)]
        trial.recovered = all(same)
        trial.misreported |= any((d / "DONE").exists() and not ok for d, ok in zip(directories, same))

    # Helpers -----------------------------------------------------------------------------------------------------
    def wait_for_checkpoint(self, directory: Path, after: int = 0, timeout: float = 600) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if (RunDir(directory).checkpoint_step() or 0) > after and (directory / "RUNNING").exists():
                return True
            if (directory / "DONE").exists():
                return False
            time.sleep(0.05)
        raise TimeoutError(f"no checkpoint in {directory}")

    def random_pause(self) -> None:
        time.sleep(self.rng.uniform(0.0, 1.5))

    def interrupted_run(self, name: str, after: int = 100) -> tuple[Path, Path]:
        """A run stopped by SIGTERM after its checkpoint past ``after``: resumable, with last.pt and prev.pt."""
        for _ in range(5):
            results = self.fresh(name)
            directory = self.run_dir(results, "s", 0)
            process = self.start(results, "s")
            self.wait_for_checkpoint(directory, after=after)
            self.random_pause()
            os.kill(process.pid, signal.SIGTERM)
            process.communicate(timeout=600)
            if not (directory / "DONE").exists():  # else it finished during the pause: try again
                return results, directory
        raise RuntimeError("every run finished before the stop signal; use more --steps")

    def damage(self, path: Path) -> None:
        data = bytearray(path.read_bytes())
        if self.rng.random() < 0.5:
            path.write_bytes(bytes(data[: self.rng.randrange(len(data))]))
        else:
            at = self.rng.randrange(len(data) - 64) if len(data) > 64 else 0
            data[at:at + 64] = bytes(self.rng.randrange(256) for _ in range(64))
            path.write_bytes(bytes(data))

    def resumed_with_notice(self, results: Path, directory: Path, trial: Trial, words: str) -> None:
        again = self.run(results, "s")
        trial.flagged = words in again.stdout and words in (directory / "run.log").read_text()
        trial.misreported |= not trial.flagged
        trial.lost |= again.returncode != 0
        trial.recovered = self.identical(directory, 0)
        trial.misreported |= (directory / "DONE").exists() and not trial.recovered

    # The faults ----------------------------------------------------------------------------------------------------
    def worker_sigkill(self) -> Trial:
        trial, results = Trial(), self.fresh("worker")
        victim, sibling = self.run_dir(results, "s", 0), self.run_dir(results, "s", 1)
        sweep = self.start(results, "s", seeds=2, workers=2)
        if self.wait_for_checkpoint(victim):
            self.random_pause()
            try:
                os.kill(json.loads((victim / "RUNNING").read_text())["pid"], signal.SIGKILL)
            except (OSError, ValueError):
                pass  # it finished in the pause: nothing to kill
        output, _ = sweep.communicate(timeout=1800)
        killed = not (victim / "DONE").exists()
        if not killed:
            raise Missed
        named = "seed=0: worker process died: killed (signal 9; out of memory?)" in output
        trial.flagged = killed and named and run_status(victim).state == "failed"
        trial.lost |= not (sibling / "DONE").exists()  # the healthy run must have finished in the same sweep
        trial.misreported |= killed and not trial.flagged
        self.settle(results, "s", 2, trial, workers=2)
        return trial

    def launcher_sigkill(self) -> Trial:
        trial, results = Trial(), self.fresh("launcher")
        sweep = self.start(results, "s", seeds=2, workers=2)
        for seed in (0, 1):
            self.wait_for_checkpoint(self.run_dir(results, "s", seed))
        self.random_pause()
        family = psutil.Process(sweep.pid).children(recursive=True)
        os.kill(sweep.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        sweep.wait(timeout=60)
        _, alive = psutil.wait_procs(family, timeout=15)
        self.orphan_seconds.append(time.monotonic() - killed_at)
        for process in alive:  # an orphan still holds the launcher's output pipe
            process.kill()
        sweep.communicate(timeout=60)
        states = [run_status(self.run_dir(results, "s", seed)).state for seed in (0, 1)]
        trial.flagged = not alive and all(state in ("interrupted", "done") for state in states)
        trial.misreported |= bool(alive) or not trial.flagged
        self.settle(results, "s", 2, trial, workers=2)
        return trial

    def damaged_last(self) -> Trial:
        trial = Trial()
        results, directory = self.interrupted_run("last")
        self.damage(directory / "ckpt" / "last.pt")
        self.resumed_with_notice(results, directory, trial, "last.pt is unreadable")
        return trial

    def damaged_both(self) -> Trial:
        trial = Trial()
        results, directory = self.interrupted_run("both")
        for name in ("last.pt", "prev.pt"):
            self.damage(directory / "ckpt" / name)
        self.resumed_with_notice(results, directory, trial, "starting over from step 0")
        return trial

    def damaged_replay(self) -> Trial:
        trial = Trial()
        results, directory = self.interrupted_run("replay")
        target = self.rng.choice(sorted((directory / "replay").glob("*.npy")))
        if self.rng.random() < 0.5:
            target.write_bytes(target.read_bytes()[: self.rng.randrange(1, target.stat().st_size)])
        else:
            with open(target, "r+b") as handle:
                handle.write(b"\x00" * 16)  # the magic string and version of the .npy header
        self.resumed_with_notice(results, directory, trial, f"replay file {target}")
        return trial

    def disk_full(self) -> Trial | None:
        trial = Trial()
        disk = self.fresh("disk").parent
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True)
        if mounted.returncode != 0:
            return None
        try:
            results = disk / "results"
            directory = self.run_dir(results, "s", 0)
            process = self.start(results, "s")
            self.wait_for_checkpoint(directory)
            self.random_pause()
            ballast = _fill(disk)
            output, _ = process.communicate(timeout=600)
            if (directory / "DONE").exists():  # it finished before the disk was full
                raise Missed
            error = (directory / "error.txt").read_text() if (directory / "error.txt").exists() else ""
            trial.flagged = (f"seed=0: disk full at {disk}" in output and "disk full at" in error
                             and not list(results.rglob("*.tmp")) and "Traceback" not in output)
            trial.misreported |= not trial.flagged
            ballast.unlink()
            self.settle(results, "s", 1, trial)
        finally:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)
        return trial

    def concurrent(self) -> Trial:
        trial, results = Trial(), self.fresh("concurrent")
        first, second = self.start(results, "s", seeds=2), self.start(results, "s", seeds=2)
        outputs = [process.communicate(timeout=1800)[0] for process in (first, second)]
        directories = [self.run_dir(results, "s", seed) for seed in (0, 1)]
        trained_once = all(len(json.loads((d / "attempts.json").read_text())) == 1 for d in directories
                           if (d / "attempts.json").exists())
        left_alone = all("busy" in output or "skip" in output for output in outputs)
        trial.flagged = left_alone
        trial.misreported |= not trained_once
        self.settle(results, "s", 2, trial)
        return trial


    def damaged_done(self) -> Trial:
        trial, results = Trial(), self.fresh("done")
        self.reference(0)
        shutil.copytree(self.references[0].parents[2], results / "s")  # a finished 2-run suite, as the reference
        victim = self.run_dir(results, "s", 0)
        damage = self.rng.choice(("eval row cut", "eval value changed", "summary value changed", "summary gone"))
        if damage.startswith("eval"):
            lines = (victim / "eval.csv").read_text().splitlines(keepends=True)
            if damage == "eval row cut":
                lines = lines[:-1]
            else:
                cells = lines[-1].split(",")
                cells[2] = str(float(cells[2]) + 100.0)  # eval/return_mean, the final score
                lines[-1] = ",".join(cells)
            (victim / "eval.csv").write_text("".join(lines))
        elif damage == "summary value changed":
            summary = json.loads((victim / "summary.json").read_text())
            summary["final_eval_return"] += 100.0
            (victim / "summary.json").write_text(json.dumps(summary))
        else:
            (victim / "summary.json").unlink()
        env = self.env(results)
        status = subprocess.run([sys.executable, "-m", "bench.cli", "status", str(results / "s")], env=env,
                                capture_output=True, text=True, timeout=600)
        report = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(results / "s")], env=env,
                                capture_output=True, text=True, timeout=900)
        report_md = results / "s" / "report" / "report.md"
        warned = report_md.exists() and f"suspect run (left out of every table and figure): {victim}" in " ".join(
            report_md.read_text().split())
        import pandas  # only this fault reads the report's tables

        runs = pandas.read_parquet(results / "s" / "report" / "runs.parquet") if report.returncode == 0 else None
        aggregated = runs is not None and 0 in set(runs["seed"])
        trial.flagged = f"suspect: {victim}" in " ".join(status.stdout.split()) and warned
        trial.misreported |= aggregated or not trial.flagged
        trial.lost |= report.returncode != 0 or runs is None or 1 not in set(runs["seed"])
        again = subprocess.run([sys.executable, "-m", "bench.cli", *self.args(2, 1, "s"), "--overwrite"], env=env,
                               capture_output=True, text=True, timeout=1800)
        trial.recovered = again.returncode == 0 and all(self.identical(self.run_dir(results, "s", seed), seed)
                                                        for seed in (0, 1))
        return trial


FAULTS: dict[str, Callable[[Campaign], Trial | None]] = {
    "worker SIGKILL": Campaign.worker_sigkill, "launcher SIGKILL": Campaign.launcher_sigkill,
    "damaged last.pt": Campaign.damaged_last, "damaged both ckpts": Campaign.damaged_both,
    "damaged replay file": Campaign.damaged_replay, "disk full": Campaign.disk_full,
    "concurrent launches": Campaign.concurrent, "damaged DONE records": Campaign.damaged_done,
}


def _landed(fault: Callable[[Campaign], Trial | None], campaign: Campaign) -> Trial | None:
    for _ in range(5):
        try:
            return fault(campaign)
        except Missed:
            continue
    raise RuntimeError("the runs kept finishing before the fault landed; use more --steps")


def _fill(disk: Path) -> Path:
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as handle:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    handle.write(b"\xa5" * size)
            except OSError:
                pass
    return ballast


def _eval_rows(directory: Path) -> list[list[str]]:
    rows = [line.split(",") for line in (directory / "eval.csv").read_text().splitlines()]
    return [row[:1] + row[2:] for row in rows]  # wall_time_s is not part of the guarantee


def _final_agent(directory: Path) -> dict:
    return torch.load(directory / "ckpt" / "last.pt", map_location="cpu", weights_only=False)["agent"]


def _same(left, right) -> bool:
    if isinstance(left, torch.Tensor):
        return isinstance(right, torch.Tensor) and torch.equal(left, right)
    if isinstance(left, dict):
        return isinstance(right, dict) and left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right))
    return left == right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(FAULTS)}")
    options = parser.parse_args()
    chosen = [name.strip() for name in options.only.split(",") if name.strip()] or list(FAULTS)
    unknown = [name for name in chosen if name not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; choose from: {', '.join(FAULTS)}")
    root = options.dir or Path(tempfile.mkdtemp(prefix="bench-faults-"))
    campaign = Campaign(root, options.steps, random.Random(options.seed))
    began = time.time()
    rows = []
    for name in chosen:
        trials = [_landed(FAULTS[name], campaign) for _ in range(options.trials)]
        done = [trial for trial in trials if trial is not None]
        if not done:
            rows.append(f"| {name} | skipped (cannot mount a tmpfs: needs root) | | | | |")
            continue
        rows.append(f"| {name} | {len(done)} | {sum(t.recovered for t in done)} | {sum(t.flagged for t in done)} | "
                    f"{sum(t.lost for t in done)} | {sum(t.misreported for t in done)} |")
        print(rows[-1], flush=True)
    print(f"\n{options.trials} trial(s) per fault, {options.steps}-step runs, {time.time() - began:.0f} s\n")
    print("| fault | trials | recovered bit-identically | flagged | lost | misreported |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    if campaign.orphan_seconds:
        print(f"\nlauncher SIGKILL: every child process gone {min(campaign.orphan_seconds):.1f}-"
              f"{max(campaign.orphan_seconds):.1f} s after the kill")
    if options.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
