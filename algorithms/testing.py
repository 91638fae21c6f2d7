"""Interface conformance checks for an agent: the ones tests/algorithms/test_agents.py runs on every built-in algorithm, for
use on your own (``docs/adding-an-algorithm.md``)::

    python -c "import my_ddpg, algorithms.testing as t; t.check_agent('my_ddpg')"

Each check builds its own agent on random data (no environment, a second or two on CPU) and raises AssertionError
naming what is wrong.
"""

from __future__ import annotations

import io
import math
from typing import Any, Callable, Mapping

import numpy as np
import torch

from algorithms.base import Agent, Batch, make_agent, resolve_config

OBS_DIM, ACT_DIM, BATCH = 5, 3, 16


def random_batch(obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM, size: int = BATCH, seed: int = 0,
                 terminal_fraction: float = 0.1, generator: torch.Generator | None = None) -> Batch:
    """A reproducible random minibatch: actions in [-1, 1], about ``terminal_fraction`` terminal transitions. Drawn
    from ``generator`` if given (successive batches differ), else from a fresh one seeded with ``seed``."""
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(size, obs_dim, generator=g),
        actions=torch.rand(size, act_dim, generator=g) * 2 - 1,
        rewards=torch.randn(size, generator=g),
        next_obs=torch.randn(size, obs_dim, generator=g),
        terminated=(torch.rand(size, generator=g) < terminal_fraction).float(),
    )


def act_shapes_and_range(agent: Agent) -> None:
    """``act`` takes numpy ``[B, obs_dim]`` (or one ``[obs_dim]`` row) and returns numpy ``[B, act_dim]`` in [-1, 1]."""
    obs = np.random.default_rng(0).normal(size=(7, agent.obs_dim)).astype(np.float32) * 10
    for deterministic in (False, True):
        actions = agent.act(obs, deterministic=deterministic)
        assert isinstance(actions, np.ndarray), f"act returned {type(actions).__name__}, not np.ndarray"
        assert actions.shape == (7, agent.act_dim), f"act returned shape {actions.shape}, not (7, {agent.act_dim})"
        assert np.all(np.abs(actions) <= 1.0), f"actions outside [-1, 1] (deterministic={deterministic})"
    single = agent.act(obs[0], deterministic=True)
    assert single.shape == (1, agent.act_dim), f"one observation gave shape {single.shape}, not (1, {agent.act_dim})"


def exploration(agent: Agent) -> None:
    """Stochastic acting varies between calls; deterministic acting repeats."""
    obs = np.zeros((4, agent.obs_dim), dtype=np.float32)
    assert not np.allclose(agent.act(obs), agent.act(obs)), "act(deterministic=False) gave the same actions twice"
    np.testing.assert_array_equal(agent.act(obs, True), agent.act(obs, True),
                                  err_msg="act(deterministic=True) gave different actions for the same input")


def update_metrics(agent: Agent, updates: int = 3) -> None:
    """``update`` returns exactly ``metric_names``, each a finite detached 0-dim tensor, and changes the policy."""
    obs = np.ones((2, agent.obs_dim), dtype=np.float32)
    acted_before = agent.act(obs, deterministic=True)
    for step in range(updates):
        metrics = agent.update(random_batch(agent.obs_dim, agent.act_dim, seed=step))
    declared = set(type(agent).metric_names)
    assert set(metrics) == declared, f"update returned keys {sorted(metrics)}, metric_names are {sorted(declared)}"
    for key, value in metrics.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0, f"metric {key!r} is not a 0-dim tensor"
        assert not value.requires_grad, f"metric {key!r} is not detached"
        assert math.isfinite(float(value)), f"metric {key!r} is {float(value)}"
    assert not np.allclose(acted_before, agent.act(obs, deterministic=True)), "update did not change the policy"


def state_dict_round_trip(agent: Agent, make_clone: Callable[[], Agent]) -> None:
    """An agent loaded from another's ``state_dict`` (through ``torch.save``) acts and updates exactly like it: what
    makes a resumed run bit-identical. ``make_clone`` builds a fresh agent of the same config and another seed."""
    for step in range(2):
        agent.update(random_batch(agent.obs_dim, agent.act_dim, seed=step))
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    clone = make_clone()
    buffer.seek(0)
    clone.load_state_dict(torch.load(buffer, weights_only=False))

    obs = np.random.default_rng(1).normal(size=(6, agent.obs_dim)).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs, True), clone.act(obs, True),
                                  err_msg="deterministic actions differ after load_state_dict")
    # The sampling generator is part of the state, so stochastic actions match too ...
    np.testing.assert_array_equal(agent.act(obs), clone.act(obs), err_msg="stochastic actions differ after "
                                  "load_state_dict: a torch generator or RNG is missing from state_attributes")
    # ... and so do the next updates (optimizer moments, temperature, counters).
    batch = random_batch(agent.obs_dim, agent.act_dim, seed=7)
    original, restored = agent.update(batch), clone.update(batch)
    for key in original:
        assert torch.equal(original[key], restored[key]), (
            f"metric {key!r} of the next update differs after load_state_dict: a module, optimizer, tensor or "
            "counter is missing from state_attributes")
    np.testing.assert_array_equal(agent.act(obs), clone.act(obs), err_msg="actions differ after one more update")


def check_agent(name: str, overrides: Mapping[str, Any] | None = None, obs_dim: int = OBS_DIM,
                act_dim: int = ACT_DIM, seed: int = 3) -> list[str]:
    """Run every check above on the registered algorithm ``name`` (import its module first), each on a fresh agent
    with the config ``resolve_config(name, None, overrides)``. Prints one line and returns the checks' names."""
    config = resolve_config(name, None, overrides)

    def build(agent_seed: int = seed) -> Agent:
        return make_agent(name, obs_dim, act_dim, config, seed=agent_seed)

    checks: dict[str, Callable[[], None]] = {
        "act_shapes_and_range": lambda: act_shapes_and_range(build()),
        "exploration": lambda: exploration(build()),
        "update_metrics": lambda: update_metrics(build()),
        "state_dict_round_trip": lambda: state_dict_round_trip(build(), lambda: build(seed + 96)),
    }
    for check_name, check in checks.items():
        try:
            check()
        except AssertionError as error:
            raise AssertionError(f"{name}: {check_name} failed: {error}") from error
    print(f"{name}: {len(checks)} interface checks passed ({', '.join(checks)})")
    return list(checks)


# Compiled vs eager ------------------------------------------------------------------------------------------------
# Under these settings every built-in agent compiles in seconds to a minute on CPU; what is compared is the
# arithmetic, which does not depend on the scale. Per algorithm: fewer chain steps and samples.
COMPILE_CHECK_CONFIG = {"hidden": (16, 16), "batch_size": BATCH}
COMPILE_CHECK_CHAINS = {
    "sdac": {"particles": 2, "diffusion_steps": 2, "reverse_samples": 4},
    "dpmd": {"particles": 2, "diffusion_steps": 2, "old_policy_samples": 2},
    "dacer": {"diffusion_steps": 2, "entropy_states": 4, "entropy_samples": 8},
    "dacer2": {"diffusion_steps": 2, "entropy_states": 4, "entropy_samples": 8},
    "cpql": {"candidates": 4},
    "qsm": {"langevin_steps": 3, "particles": 2},
    "dipo": {"diffusion_steps": 3, "action_gradient_steps": 2},
    "qvpo": {"diffusion_steps": 2, "particles": 2, "eval_particles": 2, "target_particles": 2, "train_particles": 2},
}
# Inductor fuses elementwise work and may reorder a float sum inside a fused kernel: the same math, rounding that
# differs in the last bits. Largest differences measured after 4 updates of every agent: < 5e-7 (losses of order 1).
COMPILE_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def compile_check_agent(name: str, compiled: bool, seed: int = 0) -> Agent:
    """An agent of ``name`` at the small settings above, compiled or not."""
    agent = make_agent(name, OBS_DIM, ACT_DIM, {**COMPILE_CHECK_CONFIG, **COMPILE_CHECK_CHAINS.get(name, {})}, seed=seed)
    return agent.compile() if compiled else agent


def compiled_parity(name: str, updates: int = 4) -> dict[str, float]:
    """``updates`` updates, then stochastic and deterministic acting, of a compiled and an eager agent of the same
    seed on the same batches: losses, every float tensor of the state dict (weights, optimizer moments) and actions
    agree within ``COMPILE_TOLERANCE``, and the state dicts have the same keys. Returns the largest absolute
    difference of each kind."""
    generator = torch.Generator().manual_seed(0)
    batches = [random_batch(generator=generator) for _ in range(updates)]
    eager, compiled = (_trajectory(compile_check_agent(name, flag), batches) for flag in (False, True))
    differences = {}
    for kind in ("losses", "state", "actions"):
        want, got = eager[kind], compiled[kind]
        assert want.keys() == got.keys(), f"{name}: compiled {kind} keys differ from eager"
        for key in want:
            torch.testing.assert_close(got[key], want[key], **COMPILE_TOLERANCE, msg=f"{name}: {kind} {key}")
        differences[kind] = max((float((got[k] - want[k]).abs().max()) for k in want), default=0.0)
    return differences


def _trajectory(agent: Agent, batches: list[Batch]) -> dict[str, dict[str, torch.Tensor]]:
    losses = {}
    for step, batch in enumerate(batches):
        losses.update({f"{step}/{key}": value for key, value in agent.update(batch).items()})
    obs = batches[0].obs.numpy()
    actions = {"stochastic": torch.from_numpy(agent.act(obs)), "deterministic": torch.from_numpy(agent.act(obs, True))}
    return {"losses": losses, "state": dict(_float_tensors(agent.state_dict())), "actions": actions}


def _float_tensors(state: Mapping[str, Any], prefix: str = ""):
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            yield prefix + str(key), value.detach().clone()
        elif isinstance(value, Mapping):
            yield from _float_tensors(value, f"{prefix}{key}.")
