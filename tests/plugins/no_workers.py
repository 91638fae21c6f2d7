"""A test plugin that refuses to be imported in a spawned worker process: a `bench run --plugin no_workers` whose
runs are all DONE must answer from the run directories without starting a worker."""

import multiprocessing

if multiprocessing.parent_process() is not None:
    raise RuntimeError("no_workers: a worker process was started")
