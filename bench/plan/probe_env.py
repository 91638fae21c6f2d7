"""``MultiGoal2D-v0``: a 2-D point mass with four symmetric goals, a probe for multimodal policies.

The task of Haarnoja et al. 2017 ("Reinforcement Learning with Deep Energy-Based Policies", the multi-goal
environment), also used by the DACER papers to show that diffusion policies keep several modes where a Gaussian
policy picks one. The agent starts near the origin; goals sit at (+-5, 0) and (0, +-5), so at the origin all four
directions are equally good and an optimal stochastic policy is four-modal.

- Observation: the position (x, y), float32. Action: a velocity in [-1, 1]^2; position <- clip(position +
  action, -bound, bound).
- Reward: -distance_cost * (distance to the nearest goal) - action_cost * |action|^2, plus goal_reward on the
  step that enters a goal (within goal_radius), which ends the episode (terminated). Episodes are truncated
  after 30 steps (registration). As a function of the position the reward is maximal at each goal and
  invariant under the square's symmetries (rotations by 90 degrees, reflections in the axes and diagonals).
- Reset: the origin plus uniform noise in [-reset_noise, reset_noise]^2 from the env's seeded RNG.

Coefficients are milder than Haarnoja's (action cost 30, which makes the task a control-cost trade-off) so
that a few thousand steps of training reach the goals.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "MultiGoal2D-v0"
GOALS = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, 0.0], [0.0, -5.0]])
MAX_EPISODE_STEPS = 30


class MultiGoal2DEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, distance_cost: float = 1.0, action_cost: float = 0.1, goal_reward: float = 10.0,
                 goal_radius: float = 1.0, bound: float = 7.0, reset_noise: float = 0.1) -> None:
        self.goals = GOALS.copy()
        self.distance_cost, self.action_cost, self.goal_reward = distance_cost, action_cost, goal_reward
        self.goal_radius, self.bound, self.reset_noise = goal_radius, bound, reset_noise
        self.observation_space = gym.spaces.Box(-bound, bound, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.position = np.zeros(2)

    def goal_distances(self, position: np.ndarray) -> np.ndarray:
        """Distance from each position ``[..., 2]`` to each goal: ``[..., 4]``."""
        return np.linalg.norm(np.asarray(position, dtype=np.float64)[..., None, :] - self.goals, axis=-1)

    def reward(self, position: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Reward for arriving at ``position`` with ``action`` (both broadcastable ``[..., 2]``)."""
        distances = self.goal_distances(position)
        reached = distances.min(-1) <= self.goal_radius
        return (-self.distance_cost * distances.min(-1) - self.action_cost * np.sum(np.square(action), -1)
                + self.goal_reward * reached)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-self.reset_noise, self.reset_noise, size=2)
        return self._obs(), {}

    def step(self, action: np.ndarray):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.position = np.clip(self.position + action, -self.bound, self.bound)
        distances = self.goal_distances(self.position)
        terminated = bool(distances.min() <= self.goal_radius)
        info = {"goal": int(distances.argmin()) if terminated else -1}
        return self._obs(), float(self.reward(self.position, action)), terminated, False, info

    def _obs(self) -> np.ndarray:
        return self.position.astype(np.float32)


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point="bench.plan.probe_env:MultiGoal2DEnv", max_episode_steps=MAX_EPISODE_STEPS)
