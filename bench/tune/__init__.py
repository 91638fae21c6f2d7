"""`bench tune`: Optuna studies whose trials are ordinary runs.

A trial samples a configuration from the algorithm's search space (:mod:`bench.tune.search_space`), expands it into
runs (envs x seeds) exactly like `bench run` does, and trains them one after the other with :func:`run_one` in
the worker's process. Its runs are recorded like any other under ``<results>/<study>/trial-<number>/``, so
`bench status` and `bench report <results>/<study>` read them. The objective is the mean normalized final
evaluation return over the trial's runs (score 0 = random policy, 1 = the reference table's SAC return; raw
return for a single env the table does not cover).

Pruning: after every evaluation the trial reports the mean score of the latest evaluation of each run it has
started; the step of a report is its evaluation count, the same in every trial of a study. A pruned run is
recorded with ``PRUNED`` and never resumed. A run that diverges (NaN loss or return) prunes its trial.

Storage (``--storage``): an SQLite file in the study folder by default, for workers on one machine. SQLite relies
on POSIX file locks, which network filesystems (NFS, Lustre) do not implement reliably: workers on several nodes
sharing one SQLite file can corrupt it or fail with "database is locked". On a cluster use the journal file
(``journal:/shared/path/study.journal``: append-only, its own lock file, safe on NFS) or an RDB server
(``postgresql://user:pass@host/db``).

Workers (``--workers K``) each run ``study.optimize`` until the study holds ``--trials`` trials that are
complete, pruned or running. A worker killed mid-trial leaves a RUNNING trial behind; the next worker to start
on that host marks it failed (its process is gone), and RDB storages also fail it through Optuna's heartbeat;
failed trials do not count toward the cap, so the study still reaches its number of trials.
"""
