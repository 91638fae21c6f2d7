"""A test plugin: SAC with a config key that adds a Pendulum-specific bad habit, so that a tuning study has a
configuration that is bad from the first evaluation on (for the pruner test)."""

from dataclasses import dataclass

import numpy as np

from algorithms import register
from algorithms.sac import SAC, SACConfig


@dataclass
class BiasedSACConfig(SACConfig):
    velocity_gain: float = 0.0


@register
class BiasedSAC(SAC):
    name = "biased_sac"
    description = "test only: SAC adding velocity_gain x angular velocity to its Pendulum actions"
    Config = BiasedSACConfig

    def act(self, obs, deterministic=False):
        # Torque along the angular velocity (obs[:, 2]) pumps energy in: the pendulum spins at full speed, the
        # costliest state there is (a return near -1900 per episode, against about -1200 for a random policy).
        push = self.config.velocity_gain * np.asarray(obs, dtype=np.float32)[..., 2:3]
        return np.clip(super().act(obs, deterministic) + push, -1.0, 1.0)
