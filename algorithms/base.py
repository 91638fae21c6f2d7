"""The agent interface every algorithm implements, its config base and the registry by name.

A researcher with their own loop needs only this module::

    agent = make_agent("sac", obs_dim, act_dim, config=None, device="cpu", seed=0, env_id="Hopper-v5")
    action = agent.act(obs_batch, deterministic=False)      # np.ndarray in [-1, 1]
    metrics = agent.update(batch)                           # dict of 0-dim tensors
    torch.save(agent.state_dict(), path)

``update`` returns detached 0-dim tensors rather than Python floats so the training loop never forces a
device-to-host sync per gradient step; ``float(v)`` converts one when it is actually logged.
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, NamedTuple

import numpy as np
import torch

from algorithms import config as cfg

CONFIG_DIR = Path(__file__).parent / "configs"


class Batch(NamedTuple):
    """A minibatch of transitions on the agent's device. ``terminated`` is 1.0 only for true terminal
    states; time-limit truncations are stored as 0.0 so that they bootstrap."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


@dataclass
class AgentConfig:
    """Fields every algorithm has. Subclasses add their own, each declared with its meaning and valid range
    (``config.field``, ``fields.shared``): ``__post_init__`` checks them all; a subclass adds the checks that
    relate two fields after calling it."""

    batch_size: int = cfg.field(256, "transitions per gradient update", cfg.at_least(1))
    gamma: float = cfg.field(0.99, "discount factor", cfg.interval(0, 1, "[]"))

    def __post_init__(self) -> None:
        cfg.validate(self)


class Agent(abc.ABC):
    """Base class of all agents.

    Subclasses set ``name``, ``Config``, ``metric_names`` and list in ``state_attributes`` the attributes
    that make up their learning state (modules, optimizers, tensors, torch generators, counters), so that
    ``state_dict`` / ``load_state_dict`` here restore everything needed to continue exactly.
    """

    name: ClassVar[str]
    Config: ClassVar[type[AgentConfig]] = AgentConfig
    metric_names: ClassVar[tuple[str, ...]] = ()
    state_attributes: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    # YAML of per-environment defaults (a ``default`` block, then env family / full id blocks). None: the built-in
    # location, algorithms/configs/<name>.yaml, where a missing file means no YAML defaults. A plugin sets the path
    # of its own file, e.g. ``Path(__file__).with_name("my_algo.yaml")``; that file must exist.
    defaults_file: ClassVar[str | Path | None] = None

    def __init__(self, obs_dim: int, act_dim: int, config: AgentConfig | None = None,
                 device: str | torch.device = "cpu", seed: int = 0) -> None:
        if config is None:
            config = self.Config()
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.config = config
        self.device = torch.device(device)
        self.seed = int(seed)
        # Separate streams for weight init, sampling and evaluation, so no two replay the same bits.
        self._init_seed = derive_seed(self.seed, INIT_STREAM)
        self.eval_seed = derive_seed(self.seed, EVAL_STREAM)
        # A private generator keeps action sampling reproducible and restorable without touching the
        # global torch RNG that user code may rely on.
        self.generator = seeded_generator(derive_seed(self.seed, SAMPLE_STREAM), self.device)

    @abc.abstractmethod
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False) -> np.ndarray:
        """Actions in [-1, 1] for a batch of observations ``[B, obs_dim]`` -> ``[B, act_dim]``."""

    @abc.abstractmethod
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient update; returns detached 0-dim tensors keyed by ``metric_names``."""

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"generator": self.generator.get_state()}
        for attr in self.state_attributes:
            value = getattr(self, attr)
            state[attr] = value.state_dict() if hasattr(value, "state_dict") else _clone(value)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = [key for key in ("generator", *self.state_attributes) if key not in state]
        if missing:
            raise KeyError(f"state dict for {self.name} lacks {missing}")
        self.generator.set_state(state["generator"].cpu() if self.device.type == "cpu" else state["generator"])
        for attr in self.state_attributes:
            current = getattr(self, attr)
            if hasattr(current, "load_state_dict"):
                current.load_state_dict(state[attr])
            elif isinstance(current, torch.Tensor):
                with torch.no_grad():
                    current.copy_(state[attr])
            else:
                setattr(self, attr, _clone(state[attr]))

    def compile(self, mode: str = "default") -> Agent:
        """Run this agent's networks and sampling chains through ``torch.compile`` (same math; see
        ``algorithms.compiled``). Call once, after construction or ``load_state_dict``, in either order."""
        from algorithms.compiled import compile_agent

        return compile_agent(self, mode)

    # Helpers shared by the algorithms -----------------------------------------------------------
    def as_obs_tensor(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return obs_tensor.unsqueeze(0) if obs_tensor.dim() == 1 else obs_tensor

    def seeded_init(self):
        """Context in which network construction draws from this agent's seed only."""
        return _SeededInit(self._init_seed)

    def eval_generator(self) -> torch.Generator:
        """A generator re-seeded with ``eval_seed`` at every call: deterministic acting that still needs noise (a
        sampling chain) becomes a pure function of the weights and the observations."""
        return seeded_generator(self.eval_seed, self.device)


# Sub-seeds of an agent's seed: one numpy SeedSequence child per use, so adding a stream never shifts another.
INIT_STREAM, SAMPLE_STREAM, EVAL_STREAM = 0, 1, 2


def derive_seed(seed: int, stream: int) -> int:
    """The 32-bit seed of child ``stream`` of ``np.random.SeedSequence(seed)``."""
    return int(np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(1)[0])


def seeded_generator(seed: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


class _SeededInit:
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self._fork = torch.random.fork_rng(devices=[])
        self._fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        self._fork.__exit__(*exc)


def _clone(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


# Registry -----------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Agent]] = {}
# The built-in algorithms register themselves when imported; they are imported on first registry use rather
# than by `import algorithms`, so tools that never build an agent (bench report, status) do not load them.
BUILTIN_MODULES = ("algorithms.sac", "algorithms.sdac", "algorithms.dpmd", "algorithms.dacer", "algorithms.dacer2",
                   "algorithms.cpql", "algorithms.td3", "algorithms.qsm", "algorithms.dipo", "algorithms.qvpo")


def _registry() -> dict[str, type[Agent]]:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)  # a dict lookup after the first time
    return _REGISTRY


def register(cls: type[Agent]) -> type[Agent]:
    """Class decorator: make ``cls`` available by ``cls.name`` to ``make_agent`` and ``bench``."""
    if not getattr(cls, "name", None):
        raise ValueError(f"{cls.__name__} needs a class attribute 'name' to be registered")
    if cls.name != cls.name.lower():  # get_algorithm lower-cases what the user types
        raise ValueError(f"{cls.__name__}.name {cls.name!r} must be lower case")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"an algorithm named {cls.name!r} is already registered ({_REGISTRY[cls.name].__name__})")
    _REGISTRY[cls.name] = cls
    return cls


def available_algorithms() -> list[str]:
    return sorted(_registry())


def get_algorithm(name: str) -> type[Agent]:
    try:
        return _registry()[name.lower()]
    except KeyError:
        raise cfg.ConfigError(
            f"unknown algorithm {name!r}{_did_you_mean(name, available_algorithms())}; valid choices: "
            f"{', '.join(available_algorithms())}"
        ) from None


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name).lower(), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def make_agent(name: str, obs_dim: int, act_dim: int, config: AgentConfig | Mapping[str, Any] | None = None,
               device: str | torch.device = "cpu", seed: int = 0, env_id: str | None = None) -> Agent:
    """Build a registered agent. A mapping ``config`` is read as overrides on top of the defaults for
    ``env_id`` (see :func:`resolve_config`)."""
    cls = get_algorithm(name)
    if config is None or isinstance(config, Mapping):
        config = resolve_config(name, env_id, config or {})
    return cls(obs_dim, act_dim, config, device=device, seed=seed)


# Per-environment defaults -------------------------------------------------------------------------
def config_file(name: str) -> Path:
    """The algorithm's YAML of per-environment defaults (its ``defaults_file``, or algorithms/configs/<name>.yaml)."""
    cls = get_algorithm(name)
    if cls.defaults_file is None:
        return CONFIG_DIR / f"{cls.name}.yaml"
    path = Path(cls.defaults_file)
    if not path.is_file():
        raise cfg.ConfigError(f"{cls.__name__}.defaults_file: {path} does not exist")
    return path


def env_blocks(env_id: str | None) -> list[str]:
    """Block names that apply to ``env_id``, most general first: ``Hopper`` then ``Hopper-v5``."""
    if not env_id:
        return []
    family = env_id.rsplit("-v", 1)[0]
    return [family] if family == env_id else [family, env_id]


def defaults_for(name: str, env_id: str | None) -> dict[str, Any]:
    """The ``default`` block of the algorithm's YAML, updated by the blocks matching ``env_id``."""
    path = config_file(name)
    if not path.exists():
        return {}
    data = cfg.read_yaml(path)
    values = dict(data.get("default") or {})
    for block in env_blocks(env_id):
        values.update(data.get(block) or {})
    return values


def resolve_config(name: str, env_id: str | None = None, overrides: Mapping[str, Any] | None = None) -> AgentConfig:
    """Dataclass defaults < YAML ``default`` < YAML env blocks < ``overrides``; validated."""
    cls = get_algorithm(name)
    base = cfg.build(cls.Config, defaults_for(name, env_id), where=str(config_file(name)))
    return cfg.replace(base, dict(overrides or {}), where=f"overrides for {cls.name}")


def config_keys(name: str) -> list[str]:
    return [field.name for field in dataclasses.fields(get_algorithm(name).Config)]


def validate_config_files(names: Iterable[str] | None = None) -> None:
    """Load every algorithm YAML and every env block in it, so a typo fails at load, not mid-sweep."""
    for name in names or available_algorithms():
        path = config_file(name)
        if not path.exists():
            continue
        for block in cfg.read_yaml(path):
            resolve_config(name, None if block == "default" else block)
