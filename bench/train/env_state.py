"""Capture and restore the exact state of the training envs, so a resumed run continues mid-episode.

Pickling a Gymnasium MuJoCo env does not work for this: MujocoEnv pickles its constructor arguments
(EzPickle) and comes back freshly reset. So, per sub-env:
  - MuJoCo: the whole ``MjData`` (pickled, copied back with ``mj_copyData``). The integration state alone
    (``mj_getState``) is not enough: rewards read derived quantities such as body positions, which after
    ``mj_step`` describe the pre-integration state and would differ in the last bits if recomputed;
  - any other env: its ``__dict__`` pickled (classic control keeps its state in plain attributes);
  - plus every wrapper's scalar attributes (TimeLimit's step counter, order enforcing) and the env's RNG.
"""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym


def _is_mujoco(env: gym.Env) -> bool:
    return hasattr(env, "model") and hasattr(env, "data") and type(env.data).__module__.startswith("mujoco")


def _wrapper_chain(env: gym.Env) -> list[gym.Env]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


def _scalars(obj: Any) -> dict[str, Any]:
    return {key: value for key, value in vars(obj).items() if isinstance(value, (bool, int, float, type(None)))}


def capture(env: gym.Env) -> dict[str, Any]:
    base = env.unwrapped
    state: dict[str, Any] = {
        "wrappers": [_scalars(wrapper) for wrapper in _wrapper_chain(env)],
        "np_random": base.np_random.bit_generator.state,
    }
    if _is_mujoco(base):
        state["mujoco"] = pickle.dumps(base.data)
    else:
        try:
            state["attributes"] = pickle.dumps({k: v for k, v in vars(base).items() if k != "_np_random"})
        except Exception as error:  # noqa: BLE001 - say which env cannot be checkpointed, and why
            raise TypeError(f"cannot checkpoint the state of {base!r}: {error}") from error
    return state


def restore(env: gym.Env, state: dict[str, Any]) -> None:
    base = env.unwrapped
    for wrapper, values in zip(_wrapper_chain(env), state["wrappers"]):
        vars(wrapper).update(values)
    if "mujoco" in state:
        import mujoco

        mujoco.mj_copyData(base.data, base.model, pickle.loads(state["mujoco"]))
    else:
        vars(base).update(pickle.loads(state["attributes"]))
    base.np_random.bit_generator.state = state["np_random"]


def capture_vector(envs: gym.vector.SyncVectorEnv) -> list[dict[str, Any]]:
    return [capture(env) for env in envs.envs]


def restore_vector(envs: gym.vector.SyncVectorEnv, states: list[dict[str, Any]]) -> None:
    if len(states) != len(envs.envs):
        raise ValueError(f"checkpoint holds {len(states)} env states, the run has {len(envs.envs)} envs")
    for env, state in zip(envs.envs, states):
        restore(env, state)
