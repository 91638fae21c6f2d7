"""Capture and restore the exact state of the training envs, so a resumed run continues mid-episode.

Pickling a Gymnasium MuJoCo env does not work for this: MujocoEnv pickles its constructor arguments
(EzPickle) and comes back freshly reset. So, per sub-env:
  - MuJoCo: the whole ``MjData`` (pickled, copied back with ``mj_copyData``). The integration state alone
    (``mj_getState``) is not enough: rewards read derived quantities such as body positions, which after
    ``mj_step`` describe the pre-integration state and would differ in the last bits if recomputed;
  - DeepMind Control (through shimmy): the dm_control ``Physics`` pickled whole (its MjData and its own copy of the
    MjModel: tasks such as reacher move the target in the model at every reset), the control loop's step counter
    and the task's attributes (its RandomState draws the next episode's start);
  - any other env: its ``__dict__`` pickled (classic control keeps its state in plain attributes);
  - plus every wrapper's scalar attributes (TimeLimit's step counter, order enforcing) and the env's RNG.
"""

from __future__ import annotations

import pickle
import zlib
from typing import Any

import gymnasium as gym


def _is_mujoco(env: gym.Env) -> bool:
    return hasattr(env, "model") and hasattr(env, "data") and type(env.data).__module__.startswith("mujoco")


def _is_dm_control(env: gym.Env) -> bool:
    inner = getattr(env, "_env", None)
    return inner is not None and hasattr(inner, "physics") and hasattr(inner, "task")


def _capture_dm_control(env: gym.Env) -> dict[str, Any]:
    control = env._env
    # zlib: the suite's models reserve a 13 MB arena, mostly zeros, that MjData pickles in full
    return {"physics": zlib.compress(pickle.dumps(control.physics), 1), "control": _scalars(control),
            "task": pickle.dumps(vars(control.task))}


def _restore_dm_control(env: gym.Env, state: dict[str, Any]) -> None:
    control = env._env
    control.physics.free()  # its render contexts; the unpickled Physics makes its own when asked to render
    control._physics = pickle.loads(zlib.decompress(state["physics"]))
    vars(control).update(state["control"])
    vars(control.task).update(pickle.loads(state["task"]))


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
    state: dict[str, Any] = {"wrappers": [_scalars(wrapper) for wrapper in _wrapper_chain(env)]}
    if _is_dm_control(base):  # its np_random is the task's RandomState, captured with the task
        state["dm_control"] = _capture_dm_control(base)
        return state
    state["np_random"] = base.np_random.bit_generator.state
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
    if "dm_control" in state:
        _restore_dm_control(base, state["dm_control"])
        return
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
