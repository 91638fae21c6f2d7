"""Online RL learners with one interface (see :mod:`algorithms.base`). Pure PyTorch: no harness imports.

The names below are loaded on first use (PEP 562), so importing ``algorithms.config`` does not import torch:
`bench report` and `bench status` start in a fraction of the time.
"""

from algorithms.config import ConfigError

_BASE_NAMES = ("Agent", "AgentConfig", "Batch", "available_algorithms", "config_keys", "get_algorithm", "make_agent",
               "register", "resolve_config")

__all__ = ["ConfigError", *_BASE_NAMES]


def __getattr__(name: str):
    if name in _BASE_NAMES:
        from algorithms import base
        return getattr(base, name)
    raise AttributeError(f"module 'algorithms' has no attribute {name!r}")
