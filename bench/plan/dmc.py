"""DeepMind Control Suite tasks through Shimmy (``pip install -e '.[dmc]'``).

Shimmy registers every suite task as the Gymnasium id ``dm_control/<domain>-<task>-v0``; importing shimmy is what
registers them, so it happens on first use (resolving a DMC name, building a DMC env), and a missing package is one
line naming the extra to install. The observation is a dict of arrays; :func:`bench.plan.envs._make_single` flattens
it (``FlattenObservation``, keys in sorted order). Episodes are the suite's own 1000 control steps, ended as
``truncated`` by dm_control's step limit, not by a Gymnasium TimeLimit. See docs/dmc.md.
"""

from __future__ import annotations

import logging
import os
import warnings

from algorithms.config import ConfigError

PREFIX = "dm_control/"
INSTALL_HINT = "DeepMind Control tasks need shimmy[dm-control]: pip install -e '.[dmc]'"

# The common state-based DMC set of recent diffusion/flow-policy papers plus cartpole-swingup, the usual quick check.
# Short name -> Gymnasium id; any other dm_control/<domain>-<task>-v0 id works as given.
TASKS = ("acrobot-swingup", "cartpole-swingup", "cheetah-run", "finger-spin", "hopper-hop", "humanoid-run",
         "humanoid-walk", "quadruped-run", "reacher-hard", "walker-run", "walker-walk")
SHORT_NAMES: dict[str, str] = {task: f"{PREFIX}{task}-v0" for task in TASKS}

_gl_chosen_here = False
_ready = False  # shimmy imported (ids registered) and dm_control bridged to the installed MuJoCo


def is_dmc(env_id: str) -> bool:
    return env_id.startswith(PREFIX)


def render_kwargs(env_id: str) -> dict[str, int]:
    """The camera a video shows. dm_control's default (-1) is a free camera that stays where the episode started,
    so a runner leaves the frame; camera 0 follows the body in every suite domain, except quadruped, whose
    following camera is 2 (as DrQ-v2 and TD-MPC2 render it)."""
    return {"camera_id": 2 if env_id.startswith(f"{PREFIX}quadruped-") else 0}


def choose_headless_gl() -> str | None:
    """``MUJOCO_GL=egl`` when no display exists and the user chose no backend (dm_control picks its renderer when
    it is imported, and would first try GLFW, which needs X11). Returns the one-line notice to print, or None."""
    global _gl_chosen_here
    if not os.environ.get("MUJOCO_GL") and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
        _gl_chosen_here = True
    if _gl_chosen_here:
        return "no DISPLAY: rendering offscreen with MUJOCO_GL=egl (set MUJOCO_GL to choose another backend)"
    return None


def _drop_fields_unknown_to_mujoco() -> None:
    """dm_control 1.0.50 indexes MjModel/MjData fields by a generated table that still names flex fields MuJoCo 4
    renamed (flex_vertedge, flexvert_J, ...); building any Physics then fails. No suite task has flex bodies, so
    the names the installed MuJoCo lacks are dropped from that table before the first Physics is built."""
    import mujoco
    from dm_control.mujoco.wrapper.mjbindings import sizes

    model = mujoco.MjModel.from_xml_string("<mujoco/>")
    structs = {"mjmodel": model, "mjdata": mujoco.MjData(model)}
    for struct, instance in structs.items():
        table = sizes.array_sizes[struct]
        for name in [name for name in table if not hasattr(instance, name)]:
            del table[name]


def ensure_registered() -> None:
    """Import shimmy (which registers the dm_control/ ids) and bridge dm_control to MuJoCo 4, once per process, even
    where the caller imported shimmy already; a missing package is a ConfigError."""
    global _ready
    if _ready:
        return
    try:
        with warnings.catch_warnings():
            # Without a display dm_control's first renderer choice (GLFW) warns on import; training renders nothing
            warnings.filterwarnings("ignore", message=".*DISPLAY", module="glfw")
            import dm_control.suite  # noqa: F401
            import shimmy  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"{INSTALL_HINT} ({error})") from error
    _drop_fields_unknown_to_mujoco()
    # MuJoCo 4 deprecates an attribute of some suite models (quadruped, humanoid, ...): one warning per env built
    logging.getLogger("absl").addFilter(lambda record: "settotalmass" not in record.getMessage())
    _ready = True
