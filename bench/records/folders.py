"""Whether a folder given on the command line (a results root, a suite, a report's output) can be used, checked
before anything is planned or written, so that a path that is a file, a folder that cannot be written or read,
gives one line naming the path and what is wrong instead of a traceback half-way through."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from algorithms.config import ConfigError

# OSErrors a user causes with a path (the message is the whole story); others (disk full, I/O errors) are not.
PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EROFS, errno.ENOENT,
               errno.ENAMETOOLONG, errno.ELOOP}


def check_writable_folder(path: Path | str, what: str) -> None:
    """``path`` is a folder this process can write into, or can be created: no part of it is a file and its nearest
    existing ancestor is writable."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f" ({existing} is a file)"
        raise ConfigError(f"{what} {path}: is a file, not a folder{where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" (cannot create it in {existing})"
        raise ConfigError(f"{what} {path}: permission denied, not writable{where}")


def check_readable_folder(path: Path | str, what: str) -> None:
    """``path`` exists, is a folder, and can be listed."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path}: does not exist")
    if not path.is_dir():
        raise ConfigError(f"{what} {path}: is a file, not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: permission denied, cannot be read")


def path_error_line(error: OSError) -> str | None:
    """One line for an OSError a path caused (``<path>: permission denied``); None for any other OSError."""
    if error.errno not in PATH_ERRNOS:
        return None
    names = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
    reason = (error.strerror or str(error)).lower()
    return f"{names}: {reason}" if names else reason
