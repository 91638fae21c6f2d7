"""Environment names, construction and seeding.

Short names resolve to pinned Gymnasium ids so that a sweep written today means the same task next year;
full ids (``Ant-v4`` for comparability with the SDAC paper; the DACER paper ran -v3 with mujoco-py) are accepted
as given.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from algorithms.config import ConfigError
from bench.plan import dmc, probe_env  # probe_env registers MultiGoal2D-v0; dmc registers on first use
from bench.plan.flags import did_you_mean

# Pinned versions: MuJoCo tasks at v5 (Gymnasium >= 1.0), the classic-control Pendulum at v1.
SHORT_NAMES: dict[str, str] = {
    "Ant": "Ant-v5",
    "HalfCheetah": "HalfCheetah-v5",
    "Hopper": "Hopper-v5",
    "Humanoid": "Humanoid-v5",
    "InvertedDoublePendulum": "InvertedDoublePendulum-v5",
    "InvertedPendulum": "InvertedPendulum-v5",
    "MultiGoal2D": probe_env.ENV_ID,  # built-in multimodality probe (bench/plan/probe_env.py)
    "Pendulum": "Pendulum-v1",
    "Reacher": "Reacher-v5",
    "Swimmer": "Swimmer-v5",
    "Walker2d": "Walker2d-v5",
    **dmc.SHORT_NAMES,  # DeepMind Control: cheetah-run -> dm_control/cheetah-run-v0 (docs/dmc.md)
}


def resolve_env_id(name: str, version: str | None = None) -> str:
    """``Hopper`` -> ``Hopper-v5`` (or ``Hopper-<version>``); a registered full id is returned unchanged. A version
    applies to the short names that have it (the MuJoCo tasks under a paper's ``-v4``); a task without that version
    (Pendulum has only ``-v1``) keeps its pinned id, so one protocol serves a suite that mixes both."""
    lookup = {short.lower(): short for short in SHORT_NAMES}
    short = lookup.get(name.strip().lower())
    if short is not None:
        versioned = f"{short}-{version}"
        if version and versioned not in gym.registry and not _some_short_name_has(version):
            raise ConfigError(f"env version {version!r}: no environment here has it; {short} has "
                              f"{', '.join(registered_versions(short))}")
        env_id = versioned if version and versioned in gym.registry else SHORT_NAMES[short]
    else:
        env_id = name.strip()
    if dmc.is_dmc(env_id):
        dmc.ensure_registered()
    if env_id not in gym.registry:
        raise ConfigError(f"unknown environment {name!r}{_unknown_env_hint(env_id)}; valid short names: "
                          f"{', '.join(SHORT_NAMES)}; or any registered Gymnasium id such as Ant-v4")
    return env_id


def registered_versions(family: str) -> list[str]:
    """``["v2", "v3", "v4", "v5"]`` for ``Hopper``: the versions Gymnasium has registered under that name."""
    versions = sorted(spec.version for spec in gym.registry.values()
                      if spec.name == family and spec.namespace is None and spec.version is not None)
    return [f"v{number}" for number in versions]


def _some_short_name_has(version: str) -> bool:
    return any(f"{short}-{version}" in gym.registry for short in SHORT_NAMES)


def _unknown_env_hint(env_id: str) -> str:
    """`` (Pendulum has v1)`` for an unknown version of a known env; else a near-miss of a short name or id."""
    family = env_id.rsplit("-v", 1)[0]
    versions = registered_versions(family)
    if versions and family != env_id:
        return f" ({family} has {', '.join(versions)})"
    return did_you_mean(env_id, [*SHORT_NAMES, *gym.registry])


def _make_single(env_id: str, render_mode: str | None = None) -> gym.Env:
    if dmc.is_dmc(env_id):
        dmc.ensure_registered()  # a spawned worker process has not resolved the name itself
    with warnings.catch_warnings():
        # -v4 is chosen on purpose where a paper used it (the sdac-paper preset); Gymnasium's advice to upgrade is noise
        warnings.filterwarnings("ignore", message=".*is out of date", category=DeprecationWarning)
        options = {"render_kwargs": dmc.render_kwargs(env_id)} if render_mode and dmc.is_dmc(env_id) else {}
        env = gym.make(env_id, render_mode=render_mode, **options) if render_mode else gym.make(env_id)
    if isinstance(env.observation_space, gym.spaces.Dict):  # DeepMind Control: a dict of arrays per step
        env = gym.wrappers.FlattenObservation(env)
    if not isinstance(env.action_space, gym.spaces.Box):
        raise ConfigError(f"{env_id} has a {type(env.action_space).__name__} action space; only Box is supported")
    return UnitActions(env)


class UnitActions(gym.ActionWrapper):
    """The agent acts in [-1, 1]^d; actions are clipped there and mapped affinely onto the env's bounds
    (Humanoid's true range is +-0.4, Pendulum's +-2)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        low, high = env.action_space.low, env.action_space.high
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ConfigError(f"{env.spec.id if env.spec else env}: action bounds must be finite to rescale")
        self._low, self._scale = low.astype(np.float64), (high - low).astype(np.float64) / 2.0
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=low.shape, dtype=np.float32)

    def action(self, action: np.ndarray) -> np.ndarray:
        unit = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return (self._low + (unit + 1.0) * self._scale).astype(self.env.action_space.dtype)


def make_vector_env(env_id: str, n_envs: int) -> gym.vector.VectorEnv:
    """Synchronous vector env; SAME_STEP autoreset puts the true last observation into ``info['final_obs']``
    so that the stored transition of a finished episode is the real one, not the next episode's reset."""
    return gym.vector.SyncVectorEnv(
        [lambda: _make_single(env_id) for _ in range(n_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def make_eval_envs(env_id: str, n_episodes: int, render_mode: str | None = None) -> list[gym.Env]:
    """One env per evaluation episode, stepped together so the policy acts on a batch. With ``render_mode`` only
    the first env renders (the one a video shows)."""
    return [_make_single(env_id, render_mode if index == 0 else None) for index in range(n_episodes)]


@dataclass(frozen=True)
class RunSeeds:
    """Independent seeds derived from one master seed (numpy SeedSequence), one per source of randomness."""

    env: int
    warmup_actions: int
    eval_env: int
    replay: int
    network: int
    torch: int

    @classmethod
    def derive(cls, master_seed: int) -> "RunSeeds":
        children = np.random.SeedSequence(master_seed).spawn(6)
        values = [int(child.generate_state(1, dtype=np.uint32)[0]) for child in children]
        return cls(*values)


def space_info(env_id: str) -> tuple[int, int, int]:
    """(observation dim, action dim, steps of an episode at most) of ``env_id`` without keeping the env around."""
    env = _make_single(env_id)
    try:
        limit = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 1000
        return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape)), int(limit)
    finally:
        env.close()
