"""A trained agent again, from its run directory: ``bench eval`` and :func:`load_agent` for your own code.

The agent is built from the run's config.yaml exactly as the trainer built it (same class, config, seeds, torch
threads) and given a checkpoint's weights (``ckpt/last.pt``: after DONE, the final agent). Evaluation uses the
trainer's own episode loop and evaluation seeds (:func:`bench.train.trainer.run_episodes`, reset seeds
``eval_env + i``), so a deterministic evaluation of a finished run with the protocol's episode count reproduces
the final row of its eval.csv: the same returns, bit for bit, on the same machine and library versions.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from algorithms import base as algo_base
from algorithms.config import ConfigError
from bench.jobs import RunDir
from bench.plan.dmc import choose_headless_gl
from bench.plan.envs import RunSeeds, make_eval_envs
from bench.train import checkpoint
from bench.train.trainer import build_agent, configure_torch, run_episodes

LAST = "last"
VIDEO_HINT = "video writing needs imageio with ffmpeg: pip install -e '.[video]'"


@dataclass(frozen=True)
class Evaluation:
    """What ``bench eval`` measured."""

    run: RunDir
    algo: str
    env_id: str
    checkpoint: Path
    step: int                     # env step the checkpoint was taken at
    deterministic: bool
    returns: np.ndarray
    lengths: np.ndarray
    video: Path | None = None
    frames: int = 0
    recorded: float | None = None  # the run's own eval.csv mean return at ``step``, when it has that row

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))


def run_config(run_dir: RunDir | Path | str) -> tuple[RunDir, dict[str, Any]]:
    """The run directory and its config.yaml; a path that is not a run directory is a ConfigError."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    if not run.path.is_dir():
        raise ConfigError(f"run directory {run.path} does not exist")
    config = run.read_config()
    if not config or "algo" not in config:
        raise ConfigError(f"{run.path} is not a run directory: it has no readable {RunDir.CONFIG} "
                          f"(expected results/<suite>/<algo>/<env>/seed=<k>/)")
    return run, config


def read_checkpoint(run: RunDir, which: str | Path = LAST) -> tuple[dict[str, Any], Path]:
    """(state, file) of ``which``: ``last`` (ckpt/last.pt, or prev.pt when last.pt is unreadable) or a file path."""
    if str(which) == LAST:
        loaded = checkpoint.load(run)
        if loaded.state is None:
            why = "; ".join(loaded.notices) or "the run was started with --checkpoint-every 0, or never checkpointed"
            raise ConfigError(f"no readable checkpoint in {run.checkpoint_dir} ({why})")
        return loaded.state, loaded.source
    path = Path(which)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist; give a .pt file or 'last'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file: say which and why, in one line
        raise ConfigError(f"checkpoint {path} is unreadable ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict) or "agent" not in state or "step" not in state:
        raise ConfigError(f"{path} is not a checkpoint of this harness (no agent state)")
    return state, path


def load_agent(run_dir: RunDir | Path | str, checkpoint_file: str | Path = LAST,
               device: str | torch.device = "cpu") -> algo_base.Agent:
    """The agent of a run, with the weights of ``checkpoint_file`` (default: the newest, ``ckpt/last.pt``)::

        agent = load_agent("results/demo/sac/Hopper-v5/seed=0")
        action = agent.act(obs[None], deterministic=True)[0]
    """
    run, config = run_config(run_dir)
    agent, _ = restore_agent(run, config, checkpoint_file, device)
    return agent


def restore_agent(run: RunDir, config: dict[str, Any], which: str | Path,
                  device: str | torch.device) -> tuple[algo_base.Agent, tuple[dict[str, Any], Path]]:
    """The run's agent as the trainer built it, with a checkpoint's weights; also (checkpoint state, its file)."""
    from bench.plan.envs import space_info

    obs_dim, act_dim, _ = space_info(config["env_id"])
    seeds = RunSeeds.derive(int(config["seed"]))
    agent = build_agent(config["algo"], config.get("agent") or {}, obs_dim, act_dim, device, seeds.network,
                        where=f"{run.path} agent config")
    state, path = read_checkpoint(run, which)
    agent.load_state_dict(state["agent"])
    return agent, (state, path)


def evaluate_run(run_dir: RunDir | Path | str, episodes: int | None = None, checkpoint_file: str | Path = LAST,
                 stochastic: bool = False, video: Path | None = None) -> Evaluation:
    """Evaluate a run's agent with its protocol's evaluation (episodes default to its ``eval_episodes``);
    ``video``: an mp4 of the first episode."""
    run, config = run_config(run_dir)
    episodes = int(episodes if episodes is not None else config["protocol"]["eval_episodes"])
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    writer = open_video(video) if video is not None else None
    if writer is not None:
        choose_headless_gl()  # before the first renderer exists; `bench eval` prints its notice
    seeds = RunSeeds.derive(int(config["seed"]))
    # The run's own torch threads: a different count can change the last bits of a matrix product
    configure_torch(int((config.get("execution") or {}).get("torch_threads", 1)), seeds.torch)
    agent, (state, path) = restore_agent(run, config, checkpoint_file, "cpu")
    envs = make_eval_envs(config["env_id"], episodes, render_mode="rgb_array" if writer else None)
    try:
        if writer is not None:
            writer.fps = frames_per_second(envs[0])
        returns, lengths = run_episodes(agent, envs, seeds.eval_env, deterministic=not stochastic,
                                        record=writer.append if writer else None)
    finally:
        for env in envs:
            env.close()
        if writer is not None:
            writer.close()
    return Evaluation(run, config["algo"], config["env_id"], path, int(state["step"]), not stochastic, returns,
                      lengths, video, writer.frames if writer else 0, recorded_return(run, int(state["step"])))


def recorded_return(run: RunDir, step: int) -> float | None:
    if not run.eval_log.exists():
        return None
    with open(run.eval_log) as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("step") == str(step)]
    return float(rows[-1]["eval/return_mean"]) if rows else None


def frames_per_second(env) -> float:
    """Real time: one frame per control step (MuJoCo envs and shimmy's dm_control both have ``dt``)."""
    dt = getattr(env.unwrapped, "dt", None)
    if dt:
        return 1.0 / float(dt)
    return float(env.metadata.get("render_fps") or 30)


class VideoWriter:
    """Frames streamed into an mp4 as they come (a 1000-step episode at 480 x 480 would be 700 MB held)."""

    def __init__(self, path: Path, open_writer: Callable[[Path, float], Any]) -> None:
        self.path, self._open, self.fps = path, open_writer, 30.0
        self._writer = None
        self.frames = 0

    def append(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self._writer = self._open(self.path, self.fps)
        self._writer.append_data(np.asarray(frame))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def check_video_path(path: Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ConfigError(f"--video {path}: give a file name ending in .mp4")
    if not path.parent.is_dir():
        raise ConfigError(f"--video {path}: folder {path.parent} does not exist")
    return path


def open_video(path: Path) -> VideoWriter:
    path = check_video_path(path)
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  - the mp4 encoder; imageio alone cannot write mp4
    except ImportError as error:
        raise ConfigError(f"{VIDEO_HINT} ({error})") from error

    def open_writer(target: Path, fps: float):
        # macro_block_size 1: keep the rendered size (imageio would otherwise pad it up to a multiple of 16)
        return imageio.get_writer(target, fps=fps, codec="libx264", macro_block_size=1, quality=7)

    return VideoWriter(path, open_writer)


def summary_lines(result: Evaluation) -> list[str]:
    """What ``bench eval`` prints: the returns, how they compare with the run's own evaluation, the video."""
    policy = "deterministic" if result.deterministic else "stochastic"
    lines = [f"{result.algo} on {result.env_id}, {result.checkpoint} (env step {result.step:,}): {policy} return "
             f"{result.mean:.6g} +- {np.std(result.returns):.4g} over {len(result.returns)} episodes "
             f"(min {np.min(result.returns):.6g}, max {np.max(result.returns):.6g}, mean length "
             f"{np.mean(result.lengths):.0f})"]
    if result.recorded is not None and result.deterministic:
        verdict = ("exactly this evaluation's mean" if result.mean == result.recorded else
                   "not this evaluation's mean: another episode count, machine or library version?")
        lines.append(f"the run's {RunDir.EVAL_LOG} at step {result.step:,}: {result.recorded:.6g}, {verdict}")
    if result.video is not None:
        lines.append(f"video: {result.video} ({result.frames} frames, first episode)")
    return lines
