"""``bench probe``: is a trained policy multimodal? Draw it on the MultiGoal2D-v0 probe (bench/plan/probe_env.py).

For every run directory trained on MultiGoal2D-v0 (any registered algorithm), the final agent (``ckpt/last.pt``,
or the newest checkpoint of an unfinished run) is loaded and

- at a few fixed states, ``--samples`` actions are drawn with the agent's own stochastic acting rule
  (``act(obs, deterministic=False)``: SAC's Gaussian, SDAC's best-of-N plus noise, CPQL's softmax over
  candidates, ...) and scattered in the action square, coloured by the goal nearest to where the action leads;
- ``--episodes`` stochastic episodes from the env's seeded start states are drawn as trajectories, coloured by
  the goal they reach.

One row per run, saved as PNG and PDF; a table gives, per run and state, the share of actions heading to each
goal and how many goals get at least 10 % of them ("goals covered": a spread measure; the scatter shows
whether that spread is separate modes or one broad blob), and the goals reached over the episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import gymnasium as gym
import numpy as np

import algorithms
from algorithms.config import ConfigError
from bench.jobs import RunDir
from bench.plan.probe_env import ENV_ID, GOALS, MultiGoal2DEnv
from bench.plugins import load_plugins
from bench.records.discover import find_run_dirs

# At the origin all four goals are equally near (four modes), on the diagonal two are, near (-3, 0) one is.
DEFAULT_STATES = ((0.0, 0.0), (2.5, 2.5), (-3.0, 0.0))
GOAL_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange")
MODE_SHARE = 0.1


@dataclass
class Probe:
    """What one trained agent does on the probe."""

    name: str                             # <algo> seed=<k> (step N), then the suite on a second line
    actions: list[np.ndarray]             # per state: [samples, 2]
    action_goals: list[np.ndarray]        # per state: goal index nearest to state + action, [samples]
    trajectories: list[np.ndarray]        # per episode: [steps + 1, 2]
    reached: np.ndarray                   # per episode: goal index, -1 if none

    def shares(self, state: int) -> np.ndarray:
        return np.bincount(self.action_goals[state], minlength=len(GOALS)) / len(self.action_goals[state])

    def goals_covered(self, state: int) -> int:
        return int((self.shares(state) >= MODE_SHARE).sum())


def run_probe(paths: Sequence[Path], out: Path | None, samples: int, episodes: int, states_text: str, seed: int,
              plugins: Sequence[str]) -> tuple[list[Probe], list[np.ndarray], list[Path]]:
    """Every probe run under ``paths`` drawn into one figure (default: <first path>/probe-multigoal.png)."""
    if samples < 1 or episodes < 1:
        raise ConfigError(f"--samples and --episodes must be >= 1, got {samples} and {episodes}")
    states = parse_states(states_text)
    load_plugins(plugins)
    probes = [probe_agent(run_dir, states, samples, episodes, seed) for run_dir in probe_runs(paths)]
    written = draw(probes, states, out or Path(paths[0]) / "probe-multigoal.png")
    return probes, states, written


def parse_states(text: str) -> list[np.ndarray]:
    states = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        try:
            x, y = (float(v) for v in part.split(","))
        except ValueError:
            raise ConfigError(f"--states: {part!r} is not 'x,y' (states are separated by ';')") from None
        states.append(np.array([x, y], dtype=np.float32))
    if not states:
        raise ConfigError("--states: no state given")
    return states


def probe_runs(paths: Sequence[Path]) -> list[RunDir]:
    """Run directories under ``paths`` trained on the probe env that hold a checkpoint, one figure row each."""
    found, other_envs = [], []
    for path in paths:
        if not Path(path).exists():
            raise ConfigError(f"bench probe: {str(path)!r} does not exist")
        for run_dir in find_run_dirs(path):
            config = run_dir.read_config()
            if config is None or config.get("env_id") != ENV_ID:
                other_envs.append(run_dir)
            elif run_dir.checkpoint_dir.exists():
                found.append(run_dir)
    if not found:
        raise ConfigError(f"bench probe: no run trained on {ENV_ID} with a checkpoint under "
                          f"{', '.join(map(str, paths))} ({len(other_envs)} run(s) on other envs); train one with "
                          f"`bench run --algos ALGO --envs MultiGoal2D ...`")
    return list(dict.fromkeys(found))  # the order the paths were given in (find_run_dirs sorts within each)


def load_agent(run_dir: RunDir | Path) -> tuple[algorithms.Agent, str]:
    """The agent of a run as its last checkpoint left it (the final agent for a finished run)."""
    from bench.train.evaluate import LAST, restore_agent, run_config  # torch: only when the command runs

    run, config = run_config(run_dir)
    agent, (state, _) = restore_agent(run, config, LAST, "cpu")
    return agent, f"{config['algo']} seed={config.get('seed')} (step {state['step']:,})\n{config.get('suite', '')}"


def probe_agent(run_dir: Path, states: Sequence[np.ndarray], samples: int, episodes: int, seed: int) -> Probe:
    agent, name = load_agent(run_dir)
    import torch  # here: `bench` builds this command's parser on every call, and torch costs seconds to import

    torch.manual_seed(seed)
    agent.generator.manual_seed(seed)  # every agent samples from the same stream, whatever its training left
    actions = [agent.act(np.repeat(state[None], samples, axis=0), deterministic=False) for state in states]
    goals = [nearest_goal(state + action) for state, action in zip(states, actions)]
    trajectories, reached = rollouts(agent, episodes, seed)
    return Probe(name, actions, goals, trajectories, reached)


def nearest_goal(positions: np.ndarray) -> np.ndarray:
    return np.linalg.norm(positions[..., None, :] - GOALS, axis=-1).argmin(-1)


def rollouts(agent: algorithms.Agent, episodes: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Stochastic episodes, all envs acting as one batch; the path and the reached goal (-1: none) of each."""
    envs = [gym.make(ENV_ID) for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + index)[0] for index, env in enumerate(envs)])
    paths = [[o.copy()] for o in obs]
    reached = np.full(episodes, -1)
    active = np.ones(episodes, dtype=bool)
    while active.any():
        indices = np.flatnonzero(active)
        for action, index in zip(agent.act(obs[indices], deterministic=False), indices):
            obs[index], _, terminated, truncated, info = envs[index].step(action)
            paths[index].append(obs[index].copy())
            reached[index] = info["goal"]
            active[index] = not (terminated or truncated)
    return [np.array(path) for path in paths], reached


def summary_table(probes: Sequence[Probe], states: Sequence[np.ndarray]):
    from rich.table import Table

    table = Table(title=f"{ENV_ID}: share of sampled actions heading to goals "
                        f"{', '.join(f'({x:g},{y:g})' for x, y in GOALS)} | goals covered (>= {MODE_SHARE:.0%} of actions)")
    table.add_column("run")
    for state in states:
        table.add_column(f"s=({state[0]:g},{state[1]:g})")
    table.add_column("episodes: goals reached (none)")
    for probe in probes:
        cells = [" ".join(f"{share:.2f}" for share in probe.shares(i)) + f" | {probe.goals_covered(i)}"
                 for i in range(len(states))]
        counts = np.bincount(probe.reached[probe.reached >= 0], minlength=len(GOALS))
        table.add_row(probe.name.replace("\n", " "), *cells, " ".join(map(str, counts)) + f" ({int((probe.reached < 0).sum())})")
    return table


def draw(probes: Sequence[Probe], states: Sequence[np.ndarray], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = len(states) + 1
    fig, axes = plt.subplots(len(probes), columns, figsize=(3.1 * columns, 3.1 * len(probes)), squeeze=False)
    colours = np.array(GOAL_COLOURS)
    for row, probe in enumerate(probes):
        for col, state in enumerate(states):
            ax = axes[row, col]
            ax.scatter(*probe.actions[col].T, s=4, alpha=0.35, c=colours[probe.action_goals[col]], linewidths=0)
            for goal, colour in zip(GOALS, GOAL_COLOURS):  # where each goal lies, seen from this state
                direction = (goal - state) / max(np.linalg.norm(goal - state), 1e-9)
                ax.annotate("", xy=0.95 * direction, xytext=(0, 0),
                            arrowprops={"arrowstyle": "->", "color": colour, "alpha": 0.5, "lw": 1})
            ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal", xticks=[-1, 0, 1], yticks=[-1, 0, 1])
            ax.set_title(f"actions at s=({state[0]:g}, {state[1]:g}): covers {probe.goals_covered(col)} goal(s)", fontsize=8)
        ax = axes[row, -1]
        for goal, colour in zip(GOALS, GOAL_COLOURS):
            ax.add_patch(plt.Circle(goal, MultiGoal2DEnv().goal_radius, color=colour, alpha=0.25))
        for path, goal in zip(probe.trajectories, probe.reached):
            ax.plot(*path.T, lw=0.8, alpha=0.7, color=colours[goal] if goal >= 0 else "grey")
        ax.scatter(*np.array(states).T, marker="x", color="black", s=20, zorder=3)
        counts = np.bincount(probe.reached[probe.reached >= 0], minlength=len(GOALS))
        ax.set(xlim=(-7, 7), ylim=(-7, 7), aspect="equal")
        ax.set_title(f"{len(probe.reached)} episodes, goals reached {'/'.join(map(str, counts))}", fontsize=8)
        axes[row, 0].set_ylabel(probe.name, fontsize=9)
    fig.suptitle(f"{ENV_ID}: sampled actions at fixed states (x in trajectory panel) and stochastic episodes",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room for the suptitle
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    for path in written:
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return written
