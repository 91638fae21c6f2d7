"""``run_one``: the only place that owns an env, an agent and a replay buffer.

The local pool, a SLURM array task, an Optuna trial and the tests all call this one function with a
JobSpec. It writes the run directory (see :mod:`bench.records`) and returns the summary.
"""

from __future__ import annotations

import math
import resource
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from algorithms import base as algo_base
from algorithms import config as cfg
from bench import records
from bench.envs import RunSeeds, make_eval_envs, make_vector_env
from bench.protocols import Protocol
from bench.replay import ReplayBuffer
from bench.sweep import JobSpec, load_plugins

Reporter = Callable[[dict[str, Any]], None]


class NonFiniteMetric(RuntimeError):
    """A loss or metric became NaN/inf: the run is recorded as failed instead of training on garbage."""


def run_one(job: JobSpec, reporter: Reporter | None = None) -> dict[str, Any]:
    """Train ``job`` to completion and record it; a DONE run is skipped. Never raises for a failed run:
    the failure is recorded in the run directory and reflected in the returned summary's ``status``."""
    directory = Path(job.run_dir)
    report = reporter or (lambda event: None)
    load_plugins(job.plugins)
    if (directory / records.DONE_FILE).exists():
        summary = records.read_json(directory / "summary.json")
        report({"event": "skipped", "job": job.name, "summary": summary})
        return {**summary, "status": "skipped"}
    directory.mkdir(parents=True, exist_ok=True)
    records.clear_run(directory)
    records.write_yaml(directory / "config.yaml", job.resolved_config())
    manifest = records.manifest(job.device, job.argv)
    records.write_json(directory / "manifest.json", manifest)
    try:
        summary = Trainer(job, directory, report).train()
    except BaseException as error:  # noqa: BLE001 - a KeyboardInterrupt must also leave a record
        summary = _record_failure(job, directory, manifest, error)
        report({"event": "end", "job": job.name, "summary": summary})
        if not isinstance(error, Exception):
            raise
        return summary
    manifest["end_time"] = records.now_iso()
    records.write_json(directory / "manifest.json", manifest)
    records.write_json(directory / "summary.json", summary)
    (directory / records.DONE_FILE).write_text(records.now_iso() + "\n")
    report({"event": "end", "job": job.name, "summary": summary})
    return summary


def _record_failure(job: JobSpec, directory: Path, manifest: dict[str, Any], error: BaseException) -> dict[str, Any]:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    (directory / records.ERROR_FILE).write_text(text)
    manifest["end_time"] = records.now_iso()
    records.write_json(directory / "manifest.json", manifest)
    summary = {**_identity(job), "status": "failed", "error": f"{type(error).__name__}: {error}"}
    records.write_json(directory / "summary.json", summary)
    return summary


def _identity(job: JobSpec) -> dict[str, Any]:
    return {"suite": job.suite, "algo": job.algo, "env_id": job.env_id, "seed": job.seed}


@dataclass
class Clock:
    """Seconds spent per part of the loop; the remainder of wall time is harness overhead."""

    start: float = field(default_factory=time.perf_counter)
    parts: dict[str, float] = field(default_factory=lambda: {"env": 0.0, "act": 0.0, "update": 0.0, "eval": 0.0})

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def timed(self, part: str, fn: Callable[..., Any], *args: Any) -> Any:
        began = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.parts[part] += time.perf_counter() - began


@dataclass
class Episodes:
    """Per-env running returns of the training envs and the episodes finished since the last log row."""

    returns: np.ndarray
    lengths: np.ndarray
    finished_returns: list[float] = field(default_factory=list)
    finished_lengths: list[int] = field(default_factory=list)
    count: int = 0

    def record(self, rewards: np.ndarray, done: np.ndarray) -> None:
        self.returns += rewards
        self.lengths += 1
        for index in np.flatnonzero(done):
            self.finished_returns.append(float(self.returns[index]))
            self.finished_lengths.append(int(self.lengths[index]))
            self.returns[index] = 0.0
            self.lengths[index] = 0
            self.count += 1

    def drain(self) -> tuple[float, float]:
        mean_return = float(np.mean(self.finished_returns)) if self.finished_returns else math.nan
        mean_length = float(np.mean(self.finished_lengths)) if self.finished_lengths else math.nan
        self.finished_returns.clear()
        self.finished_lengths.clear()
        return mean_return, mean_length


class MetricAccumulator:
    """Sums the agent's 0-dim metric tensors on device; converts to floats only when a row is logged."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value.detach().clone()
        self.count += 1

    def drain(self, step: int) -> dict[str, float]:
        if not self.count:
            return {}
        means = {key: float(total) / self.count for key, total in self.sums.items()}
        bad = {key: value for key, value in means.items() if not math.isfinite(value)}
        if bad:
            raise NonFiniteMetric(f"non-finite metrics at env step {step}: {bad}")
        self.sums.clear()
        self.count = 0
        return means


class Trainer:
    def __init__(self, job: JobSpec, directory: Path, report: Reporter) -> None:
        self.job, self.directory, self.report = job, directory, report
        self.protocol: Protocol = cfg.build(Protocol, job.protocol, where=f"{job.name} protocol")
        self.seeds = RunSeeds.derive(job.seed)
        _configure_torch(job.torch_threads, self.seeds.torch)
        self.device = torch.device(job.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        p = self.protocol
        self.envs = make_vector_env(job.env_id, p.n_envs)
        self.eval_envs = make_eval_envs(job.env_id, p.eval_episodes)
        self.obs_dim = int(np.prod(self.envs.single_observation_space.shape))
        self.act_dim = int(np.prod(self.envs.single_action_space.shape))
        agent_cls = algo_base.get_algorithm(job.algo)
        agent_config = cfg.build(agent_cls.Config, job.agent_config, where=f"{job.name} agent config")
        self.agent = agent_cls(self.obs_dim, self.act_dim, agent_config, device=self.device, seed=self.seeds.network)
        self.buffer = ReplayBuffer(self.obs_dim, self.act_dim, min(p.replay_size, p.total_steps),
                                   self.seeds.replay, self.device)
        self.warmup_rng = np.random.default_rng(self.seeds.warmup_actions)
        self.metrics = MetricAccumulator(agent_cls.metric_names)
        self.episodes = Episodes(np.zeros(p.n_envs), np.zeros(p.n_envs, dtype=np.int64))
        self.eval_log = records.CsvLog(directory / "eval.csv", records.EVAL_COLUMNS)
        self.train_log = records.CsvLog(directory / "train.csv", records.TRAIN_COLUMNS + agent_cls.metric_names)
        self.eval_returns: list[tuple[int, float]] = []
        self.step = 0
        self.updates = 0
        self.update_credit = 0.0

    # The loop ---------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        p = self.protocol
        self.clock = Clock()
        self.report({"event": "start", "job": self.job.name, "total": p.total_steps})
        eval_schedule = iter(self.protocol.eval_steps)
        next_eval = next(eval_schedule)
        obs, _ = self.envs.reset(seed=self.seeds.env)
        self._interval_start = (0, self.clock.elapsed())
        self.warmup_done_at: tuple[float, float] | None = None
        while True:
            if self.step == next_eval:
                self.evaluate()
                next_eval = next(eval_schedule, None)
            if self.step >= p.total_steps:
                break
            obs = self.env_step(obs)
            self.train_step()
            if self.step % p.log_every == 0:
                self.log_train_row()
        return self.finish()

    def env_step(self, obs: np.ndarray) -> np.ndarray:
        p = self.protocol
        if self.step < p.warmup_steps:
            actions = self.warmup_rng.uniform(-1.0, 1.0, size=(p.n_envs, self.act_dim)).astype(np.float32)
        else:
            actions = self.clock.timed("act", self.agent.act, obs)
        next_obs, rewards, terminated, truncated, info = self.clock.timed("env", self.envs.step, actions)
        done = terminated | truncated
        stored_next = next_obs
        if done.any():
            # SAME_STEP autoreset: next_obs already holds the reset observation for finished envs.
            stored_next = next_obs.copy()
            for index in np.flatnonzero(done):
                stored_next[index] = info["final_obs"][index]
        self.buffer.add(obs, actions, rewards, stored_next, terminated.astype(np.float32))
        self.episodes.record(rewards, done)
        self.step += p.n_envs
        return next_obs

    def train_step(self) -> None:
        p = self.protocol
        if self.step <= p.warmup_steps:  # updates begin once warm-up transitions are all in the buffer
            return
        if self.warmup_done_at is None:
            self.warmup_done_at = (self.step, self.clock.elapsed(), self.clock.parts["eval"])
        self.update_credit += p.utd * p.n_envs
        batch_size = self.agent.config.batch_size
        while self.update_credit >= 1.0:
            batch = self.buffer.sample(batch_size)
            self.metrics.add(self.clock.timed("update", self.agent.update, batch))
            self.updates += 1
            self.update_credit -= 1.0

    # Records ----------------------------------------------------------------------------------------
    def log_train_row(self) -> None:
        start_step, start_time = self._interval_start
        now = self.clock.elapsed()
        sps = (self.step - start_step) / max(now - start_time, 1e-9)
        self._interval_start = (self.step, now)
        episode_return, episode_length = self.episodes.drain()
        row = {
            "step": self.step, "wall_time_s": now, "train/episode_return": episode_return,
            "train/episode_length": episode_length, "train/episodes": self.episodes.count, "updates": self.updates,
            "time/sps": sps, "time/env_s": self.clock.parts["env"], "time/act_s": self.clock.parts["act"],
            "time/update_s": self.clock.parts["update"], "time/eval_s": self.clock.parts["eval"],
            "mem/rss_peak_mb": peak_rss_mb(), **self.metrics.drain(self.step),
        }
        self.train_log.append(row)
        self.report({"event": "progress", "job": self.job.name, "step": self.step, "sps": sps,
                     "total": self.protocol.total_steps})

    def evaluate(self) -> None:
        returns, lengths = self.clock.timed("eval", run_episodes, self.agent, self.eval_envs, self.seeds.eval_env)
        row = {
            "step": self.step, "wall_time_s": self.clock.elapsed(), "eval/return_mean": float(np.mean(returns)),
            "eval/return_std": float(np.std(returns)), "eval/return_min": float(np.min(returns)),
            "eval/return_max": float(np.max(returns)), "eval/length_mean": float(np.mean(lengths)),
            "eval/episodes": len(returns),
        }
        self.eval_log.append(row)
        self.eval_returns.append((self.step, row["eval/return_mean"]))
        self.report({"event": "eval", "job": self.job.name, "step": self.step,
                     "return": row["eval/return_mean"], "total": self.protocol.total_steps})

    def finish(self) -> dict[str, Any]:
        if self.step % self.protocol.log_every != 0:
            self.log_train_row()
        self.train_log.close()
        self.eval_log.close()
        self.envs.close()
        for env in self.eval_envs:
            env.close()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        wall = self.clock.elapsed()
        parts = self.clock.parts
        accounted = sum(parts.values())
        final_step, final_return = self.eval_returns[-1]
        summary = {
            **_identity(self.job), "status": "done", "total_steps": self.step, "updates": self.updates,
            "final_eval_return": final_return, "final_eval_step": final_step,
            "best_eval_return": max(value for _, value in self.eval_returns),
            "wall_time_s": wall, "time/sps": self._sps_after_warmup(wall), "time/sps_overall": self.step / wall,
            "time/updates_per_s": self.updates / parts["update"] if parts["update"] else None,
            **{f"time/{name}_s": seconds for name, seconds in parts.items()},
            "time/overhead_frac": max(0.0, 1.0 - accounted / wall),
            "mem/rss_peak_mb": peak_rss_mb(), **cuda_memory(self.device),
        }
        return summary

    def _sps_after_warmup(self, wall: float) -> float | None:
        """Env steps per second from the end of warm-up to the end, evaluation time excluded."""
        if self.warmup_done_at is None:
            return None
        step0, time0, eval0 = self.warmup_done_at
        seconds = (wall - time0) - (self.clock.parts["eval"] - eval0)
        return (self.step - step0) / seconds if seconds > 0 else None


def run_episodes(agent: algo_base.Agent, envs: list, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One deterministic-policy episode per env, all envs acting as one batch. The same reset seeds are used
    at every evaluation, so changes between evaluation points come from the policy, not the start states."""
    observations = [env.reset(seed=seed + index)[0] for index, env in enumerate(envs)]
    obs = np.stack(observations).astype(np.float32)
    returns = np.zeros(len(envs))
    lengths = np.zeros(len(envs), dtype=np.int64)
    active = np.ones(len(envs), dtype=bool)
    while active.any():
        indices = np.flatnonzero(active)
        actions = agent.act(obs[indices], deterministic=True)
        for action, index in zip(actions, indices):
            next_obs, reward, terminated, truncated, _ = envs[index].step(action)
            returns[index] += reward
            lengths[index] += 1
            obs[index] = next_obs
            active[index] = not (terminated or truncated)
    return returns, lengths


def _configure_torch(threads: int, seed: int) -> None:
    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process (in-process runs); harmless
    torch.manual_seed(seed)


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux. Each run gets its own worker process, so this is the run's peak.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cuda_memory(device: torch.device) -> dict[str, float | None]:
    if device.type != "cuda":
        return {"mem/cuda_alloc_peak_mb": None, "mem/cuda_reserved_peak_mb": None}
    return {
        "mem/cuda_alloc_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20,
        "mem/cuda_reserved_peak_mb": torch.cuda.max_memory_reserved(device) / 2**20,
    }
