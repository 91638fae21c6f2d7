"""Which run directories exist below a folder (a results root, a suite folder or a single run).

Only runs that have started (a config.yaml or a DONE marker) are found here: runs a sweep planned but has not
started yet are `bench status`'s business (:func:`bench.launch.status.planned_runs`), not a reader's."""

from __future__ import annotations

from pathlib import Path

from bench.jobs import RunDir


def find_run_dirs(path: Path) -> list[RunDir]:
    path = Path(path)
    single = RunDir(path)
    if single.looks_like_run:
        return [single]
    found = {config.parent for config in path.glob(f"**/seed=*/{RunDir.CONFIG}")}
    found |= {marker.parent for marker in path.glob(f"**/seed=*/{RunDir.DONE_MARKER}")}
    return [RunDir(folder) for folder in sorted(found)]
