"""Launch: where runs execute (the local process pool, SLURM through submitit, submitit's debug executor), with
one function that resolves executor, cluster profile, device and threads for `bench run` and `bench tune`, the
live progress display and `bench status`."""
