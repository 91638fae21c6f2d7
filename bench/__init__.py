"""The benchmark harness: `bench run` plans runs, launches them, trains them, records them; `bench report` and
`bench tune` read what they recorded. Imports algorithms/, never the reverse.

The wings, in import order: a module may import the core and the wings listed before its own, never one after
it (tests/architecture/test_layers.py checks every import; docs/architecture.md tells the story).

    core      jobs.py (JobSpec, RunDir, SuiteDir, RunState, Outcome), plugins.py: the contract every wing shares
    records   what a run directory holds while and after it trains: CSV logs, manifest, lock, state, discovery
    plan      sweep specs and flags -> override layers -> JobSpecs; environments, protocols, the probe env
    train     run_one and the training loop: env, agent, replay, checkpoints
    launch    where runs execute: local pool, SLURM, cluster profiles, progress, `bench status`
    report    collect, normalise, rliable statistics, figures, tables, `bench probe`
    tune      Optuna studies whose trials are ordinary runs
    cli.py    the `bench` command: parse, dispatch, print
"""

from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"  # shipped tables: protocols, normalization, published results
# The order above, lowest first; tests/architecture/test_layers.py holds every import in bench/ to it.
WINGS = ("core", "records", "plan", "train", "launch", "report", "tune", "cli")
CORE_MODULES = ("jobs", "plugins")
