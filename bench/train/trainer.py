"""The training loop of one run: :class:`Trainer` steps the envs, updates the agent, evaluates, logs and
checkpoints; its ``state_dict`` is everything a resume needs to continue exactly."""

from __future__ import annotations

import math
import os
import random
import resource
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from algorithms import base as algo_base
from algorithms import config as cfg
from bench.jobs import AttemptOutcome, JobSpec, Outcome, RunDir
from bench.plan.envs import RunSeeds, make_eval_envs, make_vector_env
from bench.plan.protocols import Protocol
from bench.records.csvlog import EVAL_LOG_COLUMNS, TRAIN_LOG_COLUMNS, CsvLog
from bench.records.lock import slurm_task_id
from bench.records.sinks import open_sinks
from bench.train import checkpoint, env_state
from bench.train.replay import ReplayBuffer

EventSink = Callable[[dict[str, Any]], None]  # progress events: start, eval, checkpoint, notice, end
EvalHook = Callable[[int, float], bool]  # (env step, mean eval return) -> True to stop the run now (pruned)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)


class NonFiniteMetric(RuntimeError):
    """A loss or metric became NaN/inf: the run is recorded as failed instead of training on garbage."""


class RunInterrupted(Exception):
    """A stop signal arrived; a checkpoint was written and the run can be resumed."""


class RunPruned(Exception):
    """The ``on_eval`` hook (an Optuna trial's pruner) stopped the run; it is final, never resumed."""


class StopSignals:
    """While active, SIGTERM/SIGUSR2 (SLURM's warnings before preemption or timeout) and SIGINT only set a
    flag; the training loop checks it once per iteration, checkpoints and stops."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.all_received: list[str] = []  # e.g. preemption: SIGTERM and SIGUSR2, in either order
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        self.all_received.append(signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class Clock:
    """Training time of the work kept (restored from a checkpoint on resume) and its split by part;
    the remainder of wall time is harness overhead. With a compiled agent, ``compile_seconds`` reads the
    process's compile time: what a timed call spent compiling goes to the ``compile`` part and out of the training
    time, so speed figures are those of the compiled code."""

    offset: float = 0.0
    start: float = field(default_factory=time.perf_counter)
    parts: dict[str, float] = field(default_factory=lambda: {"env": 0.0, "act": 0.0, "update": 0.0, "eval": 0.0})
    compile_seconds: Callable[[], float] | None = None
    compiled_this_attempt: float = 0.0

    def elapsed(self) -> float:
        return self.offset + time.perf_counter() - self.start - self.compiled_this_attempt

    def timed(self, part: str, fn: Callable[..., Any], *args: Any) -> Any:
        began = time.perf_counter()
        compiled_before = self.compile_seconds() if self.compile_seconds else 0.0
        try:
            return fn(*args)
        finally:
            spent = time.perf_counter() - began
            compiling = min(spent, self.compile_seconds() - compiled_before) if self.compile_seconds else 0.0
            self.parts[part] += spent - compiling
            if compiling > 0:
                self.parts["compile"] = self.parts.get("compile", 0.0) + compiling
                self.compiled_this_attempt += compiling


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
    def __init__(self, job: JobSpec, run: RunDir, emit: EventSink,
                 resume_state: dict[str, Any] | None = None, signals: StopSignals | None = None,
                 on_eval: EvalHook | None = None) -> None:
        self.job, self.run, self.emit, self.on_eval = job, run, emit, on_eval
        self.signals = signals or StopSignals()
        self.protocol: Protocol = cfg.build(Protocol, job.protocol, where=f"{job.name} protocol")
        self.seeds = RunSeeds.derive(job.seed)
        configure_torch(job.torch_threads, self.seeds.torch)
        self.device = torch.device(job.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        p = self.protocol
        self.checkpoint_every = (job.checkpoint_every if job.checkpoint_every is not None
                                 else checkpoint.default_interval(p.total_steps, p.n_envs))
        self.envs = make_vector_env(job.env_id, p.n_envs)
        self.eval_envs = make_eval_envs(job.env_id, p.eval_episodes)
        self.obs_dim = int(np.prod(self.envs.single_observation_space.shape))
        self.act_dim = int(np.prod(self.envs.single_action_space.shape))
        agent_cls = algo_base.get_algorithm(job.algo)
        self.agent = build_agent(job.algo, job.agent_config, self.obs_dim, self.act_dim, self.device,
                                 self.seeds.network, where=f"{job.name} agent config")
        if job.compile:
            self.agent.compile(job.compile)
        self.buffer = ReplayBuffer(self.obs_dim, self.act_dim, min(p.replay_size, p.total_steps), self.seeds.replay,
                                   self.device, run.replay_dir if self.checkpoint_every else None)
        self.warmup_rng = np.random.default_rng(self.seeds.warmup_actions)
        self.metrics = MetricAccumulator(agent_cls.metric_names)
        self.episodes = Episodes(np.zeros(p.n_envs), np.zeros(p.n_envs, dtype=np.int64))
        self.eval_log = CsvLog(run.eval_log, EVAL_LOG_COLUMNS)
        self.train_log = CsvLog(run.train_log, TRAIN_LOG_COLUMNS + agent_cls.metric_names)
        self.eval_returns: list[tuple[int, float]] = []
        self.step = 0
        self.updates = 0
        self.update_credit = 0.0
        self.warmup_done_at: tuple[int, float, float] | None = None
        self.clock = Clock(compile_seconds=_compile_timer(job))
        self.last_logged_step = -1
        self.obs = self.envs.reset(seed=self.seeds.env)[0]
        self.resumed = resume_state is not None
        if self.resumed:
            self.load_state(resume_state)
        self.buffer.reserve(self._rows_until_next_checkpoint())
        self._start_attempt()
        # Last: the sinks replay the CSV logs as they stand (cut back to the checkpoint on resume).
        began = time.perf_counter()
        self.sinks = open_sinks(job.log, run, job, self._notice)
        self.clock.start += time.perf_counter() - began  # starting wandb-core is not training time

    # The loop ---------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        try:
            return self._train()
        except RunPruned:
            raise  # closed by prune()
        except BaseException:
            self.sinks.close(exit_code=1)
            raise

    def _train(self) -> dict[str, Any]:
        p = self.protocol
        self.emit({"event": "start", "step": self.step, "total": p.total_steps})
        # A checkpoint is taken after the evaluation due at its step, so a resumed run skips that one.
        pending_evals = iter([s for s in p.eval_steps if s > self.step or (s == self.step and not self.resumed)])
        next_eval = next(pending_evals, None)
        next_checkpoint = self.step + self.checkpoint_every if self.checkpoint_every else None
        self._interval_start = (self.step, self.clock.elapsed())
        while True:
            if self.step == next_eval:
                self.evaluate()
                next_eval = next(pending_evals, None)
            if self.step >= p.total_steps:
                break
            if self.signals.received is not None:
                raise RunInterrupted(f"signal {signal.Signals(self.signals.received).name} at env step {self.step}; "
                                     + self._checkpoint_on_signal())
            if next_checkpoint is not None and self.step >= next_checkpoint:
                self.save_checkpoint()
                next_checkpoint += self.checkpoint_every
            self.obs = self.env_step(self.obs)
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
        self.sinks.log("train", row)
        self.last_logged_step = self.step
        self._heartbeat()
        self.emit({"event": "progress", "step": self.step, "sps": sps, "total": self.protocol.total_steps})

    def evaluate(self) -> None:
        returns, lengths = self.clock.timed("eval", run_episodes, self.agent, self.eval_envs, self.seeds.eval_env)
        row = {
            "step": self.step, "wall_time_s": self.clock.elapsed(), "eval/return_mean": float(np.mean(returns)),
            "eval/return_std": float(np.std(returns)), "eval/return_min": float(np.min(returns)),
            "eval/return_max": float(np.max(returns)), "eval/length_mean": float(np.mean(lengths)),
            "eval/episodes": len(returns),
        }
        self.eval_log.append(row)
        self.sinks.log("eval", row)
        self.eval_returns.append((self.step, row["eval/return_mean"]))
        self.emit({"event": "eval", "step": self.step, "return": row["eval/return_mean"],
                     "total": self.protocol.total_steps})
        if self.on_eval is not None and self.on_eval(self.step, row["eval/return_mean"]):
            self.prune(row["eval/return_mean"])

    def prune(self, last_return: float) -> None:
        self.run.heartbeat(self.step, AttemptOutcome.PRUNED)
        self.close()
        self.run.remove_finished_state()  # a pruned run is never resumed
        raise RunPruned(f"pruned at env step {self.step} (eval return {last_return:.6g})")

    def finish(self) -> dict[str, Any]:
        if self.last_logged_step != self.step:
            self.log_train_row()
        if self.checkpoint_every:
            self.save_checkpoint()  # the final agent stays in ckpt/last.pt; the replay data is dropped
        self.run.heartbeat(self.step, AttemptOutcome.DONE)
        summary = self.summary()
        self.close()
        self.run.remove_finished_state()
        return summary

    def close(self) -> None:
        self.sinks.close()
        self.train_log.close()
        self.eval_log.close()
        self.envs.close()
        for env in self.eval_envs:
            env.close()

    def summary(self) -> dict[str, Any]:
        train_time = self.clock.elapsed()
        parts = self.clock.parts
        final_step, final_return = self.eval_returns[-1]
        return {
            **self.job.identity(), "status": Outcome.DONE, "total_steps": self.step, "updates": self.updates,
            "final_eval_return": final_return, "final_eval_step": final_step,
            "best_eval_return": max(value for _, value in self.eval_returns),
            "wall_time_s": self.run.wall_time(), "resumes": self.run.resumes(),
            "time/train_s": train_time, "time/sps": self._sps_after_warmup(train_time),
            "time/sps_overall": self.step / train_time,
            "time/updates_per_s": self.updates / parts["update"] if parts["update"] else None,
            **{f"time/{name}_s": seconds for name, seconds in parts.items()},
            "time/overhead_frac": max(0.0, 1.0 - sum(v for k, v in parts.items() if k != "compile") / train_time),
            "mem/rss_peak_mb": peak_rss_mb(), **cuda_memory(self.device),
            "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "time/cpu_s": process_cpu_seconds(),
        }

    def _sps_after_warmup(self, train_time: float) -> float | None:
        """Env steps per second from the end of warm-up to the end, evaluation time excluded."""
        if self.warmup_done_at is None:
            return None
        step0, time0, eval0 = self.warmup_done_at
        seconds = (train_time - time0) - (self.clock.parts["eval"] - eval0)
        return (self.step - step0) / seconds if seconds > 0 else None

    def _notice(self, message: str) -> None:
        self.run.note(message)
        self.emit({"event": "notice", "message": message})

    # Attempts ---------------------------------------------------------------------------------------
    def _start_attempt(self) -> None:
        self.run.start_attempt(self.step, socket.gethostname(), slurm_task_id(),
                               int(os.environ.get("SLURM_RESTART_COUNT", 0)))

    def _heartbeat(self) -> None:
        self.run.heartbeat(self.step)

    # Checkpoints ------------------------------------------------------------------------------------
    def _checkpoint_on_signal(self) -> str:
        if self.checkpoint_every:
            self.save_checkpoint()
            return "checkpoint written"
        # Without checkpoints the replay rows live only in this process's memory: a checkpoint now would hold the
        # fill pointer but not the rows, and a resume would train on zeros. The re-run starts over instead.
        self.run.heartbeat(self.step, AttemptOutcome.INTERRUPTED)
        return "no checkpoint (--checkpoint-every 0): running the command again starts this run over"

    def save_checkpoint(self) -> None:
        began = time.perf_counter()
        self.buffer.flush()
        checkpoint.save(self.run, self.state_dict())
        self.buffer.reserve(self._rows_until_next_checkpoint())
        self.run.heartbeat(self.step, AttemptOutcome.INTERRUPTED if self.signals.received is not None
                           else AttemptOutcome.RUNNING)
        self.emit({"event": "checkpoint", "step": self.step, "seconds": time.perf_counter() - began})

    def _rows_until_next_checkpoint(self) -> int:
        return (self.checkpoint_every or 0) + self.protocol.n_envs

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1, "step": self.step, "updates": self.updates, "update_credit": self.update_credit,
            "last_logged_step": self.last_logged_step,
            "obs": self.obs, "agent": self.agent.state_dict(), "replay": self.buffer.state_dict(),
            "envs": env_state.capture_vector(self.envs),
            "episodes": {"returns": self.episodes.returns, "lengths": self.episodes.lengths,
                         "finished_returns": self.episodes.finished_returns,
                         "finished_lengths": self.episodes.finished_lengths, "count": self.episodes.count},
            "metrics": {"sums": self.metrics.sums, "count": self.metrics.count},
            "eval_returns": self.eval_returns, "warmup_done_at": self.warmup_done_at,
            "clock": {"elapsed": self.clock.elapsed(), "parts": dict(self.clock.parts)},
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    "warmup": self.warmup_rng.bit_generator.state},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.step, self.updates, self.update_credit = state["step"], state["updates"], state["update_credit"]
        self.last_logged_step = state["last_logged_step"]
        self.obs = state["obs"]
        self.agent.load_state_dict(state["agent"])
        self.buffer.load_state_dict(state["replay"])
        env_state.restore_vector(self.envs, state["envs"])
        episodes = state["episodes"]
        self.episodes = Episodes(episodes["returns"], episodes["lengths"], list(episodes["finished_returns"]),
                                 list(episodes["finished_lengths"]), episodes["count"])
        self.metrics.sums = {key: value.to(self.device) for key, value in state["metrics"]["sums"].items()}
        self.metrics.count = state["metrics"]["count"]
        self.eval_returns = [tuple(item) for item in state["eval_returns"]]
        self.warmup_done_at = state["warmup_done_at"]
        self.clock = Clock(offset=state["clock"]["elapsed"], parts=dict(state["clock"]["parts"]),
                           compile_seconds=_compile_timer(self.job))
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.warmup_rng.bit_generator.state = rng["warmup"]


def build_agent(algo: str, agent_config: dict[str, Any], obs_dim: int, act_dim: int, device: torch.device | str,
                seed: int, where: str) -> algo_base.Agent:
    """The agent of a run from its resolved config (config.yaml's ``agent``), as the trainer builds it."""
    agent_cls = algo_base.get_algorithm(algo)
    return agent_cls(obs_dim, act_dim, cfg.build(agent_cls.Config, agent_config, where=where), device=device,
                     seed=seed)


FrameSink = Callable[[np.ndarray], None]


def run_episodes(agent: algo_base.Agent, envs: list, seed: int, deterministic: bool = True,
                 record: FrameSink | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One episode per env, all envs acting as one batch. The same reset seeds are used at every evaluation, so
    changes between evaluation points come from the policy, not the start states. ``record`` receives the first
    env's rendered frames: the start state, then one per step until its episode ends."""
    observations = [env.reset(seed=seed + index)[0] for index, env in enumerate(envs)]
    if record is not None:
        record(envs[0].render())
    obs = np.stack(observations).astype(np.float32)
    returns = np.zeros(len(envs))
    lengths = np.zeros(len(envs), dtype=np.int64)
    active = np.ones(len(envs), dtype=bool)
    while active.any():
        indices = np.flatnonzero(active)
        actions = agent.act(obs[indices], deterministic=deterministic)
        for action, index in zip(actions, indices):
            next_obs, reward, terminated, truncated, _ = envs[index].step(action)
            returns[index] += reward
            lengths[index] += 1
            obs[index] = next_obs
            active[index] = not (terminated or truncated)
            if record is not None and index == 0:
                record(envs[0].render())
    return returns, lengths


def configure_torch(threads: int, seed: int) -> None:
    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process (in-process runs); harmless
    torch.manual_seed(seed)


def _compile_timer(job: JobSpec) -> Callable[[], float] | None:
    if not job.compile:
        return None
    from algorithms.compiled import compile_seconds

    return compile_seconds


def process_cpu_seconds() -> float:
    """CPU time (user + system, all threads) of this process: on a shared machine the cost that wall time hides.
    The attempt's own (a resumed run's earlier attempts ran in other processes)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
