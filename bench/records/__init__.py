"""Records: what a run writes while it trains (CSV logs, manifest), who holds it (the lock), what state its
directory is in, and which run directories exist below a folder. Paths and file names come from
:class:`bench.jobs.RunDir`."""
