"""Plugins: user modules that register extra algorithms (``bench run --plugin my_ddpg``, ``$BENCH_PLUGINS``).

An entry is a module name (``my_ddpg``, ``my_pkg.agents``) or the path of a ``.py`` file (``./my_ddpg.py``).
A module name is looked up on ``sys.path`` and then in the current directory: ``python -m bench.cli`` puts the
current directory on the path, the ``bench`` console script does not. A file's folder goes first on ``sys.path``.
The local pool's spawned workers start with this process's ``sys.path`` and working directory, so they import
the same files; a JobSpec carries the module names to workers and SLURM tasks.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

from algorithms.config import ConfigError

PLUGIN_ENV_VAR = "BENCH_PLUGINS"


def requested(flag_entries: Iterable[str]) -> list[str]:
    """``--plugin`` entries, then those of ``$BENCH_PLUGINS``; file paths made absolute (sweep.yaml keeps them)."""
    from_env = filter(None, (item.strip() for item in os.environ.get(PLUGIN_ENV_VAR, "").split(",")))
    return [str(Path(entry).expanduser().resolve()) if is_plugin_file(entry) else entry
            for entry in [*flag_entries, *from_env]]


def load_plugins(entries: Sequence[str]) -> list[str]:
    """Import every entry; returns their module names."""
    return [_import_plugin(str(entry)) for entry in entries]


def is_plugin_file(entry: str) -> bool:
    """A plugin entry naming a file (``./my_ddpg.py``) rather than a module (``my_ddpg``)."""
    return entry.endswith(".py") or "/" in entry or os.sep in entry


def _import_plugin(entry: str) -> str:
    if is_plugin_file(entry):
        path = Path(entry).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"plugin file {path} does not exist")
        name = path.stem
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        module = _import(name, entry)
        origin = Path(getattr(module, "__file__", "") or "").resolve()
        if origin != path:
            raise ConfigError(f"plugin {entry!r}: the name {name!r} is already taken by {origin}; rename the file")
        return name
    try:
        _import(entry, entry)
    except _PluginNotFound:
        cwd = os.getcwd()
        if cwd in sys.path or "" in sys.path:
            raise _not_found(entry, cwd) from None
        sys.path.append(cwd)  # after everything else, so a file here never shadows an installed module
        try:
            _import(entry, entry)
        except _PluginNotFound:
            sys.path.remove(cwd)
            raise _not_found(entry, cwd) from None
    return entry


class _PluginNotFound(ConfigError):
    pass


def _import(name: str, entry: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            raise _PluginNotFound(name) from None
        raise ConfigError(f"plugin {entry!r} could not be imported: {error}") from None
    except ImportError as error:
        raise ConfigError(f"plugin {entry!r} could not be imported: {error}") from None


def _not_found(entry: str, cwd: str) -> ConfigError:
    return ConfigError(
        f"plugin module {entry!r} not found on the Python path or in the current directory ({cwd}); run bench from "
        f"the folder that holds {entry.split('.')[0]}.py, give the file's path (--plugin path/to/"
        f"{entry.split('.')[0]}.py) or add its folder to PYTHONPATH")
