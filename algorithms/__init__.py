"""Online RL learners with one interface (see :mod:`algorithms.base`). Pure PyTorch: no harness imports."""

from algorithms import cpql, dpmd, sac, sdac  # noqa: F401  (register "cpql", "dpmd", "sac", "sdac")
from algorithms.base import (
    Agent,
    AgentConfig,
    Batch,
    available_algorithms,
    config_keys,
    get_algorithm,
    make_agent,
    register,
    resolve_config,
)
from algorithms.config import ConfigError

__all__ = [
    "Agent", "AgentConfig", "Batch", "ConfigError", "available_algorithms", "config_keys",
    "get_algorithm", "make_agent", "register", "resolve_config",
]
