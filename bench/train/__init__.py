"""Train: :func:`bench.train.run.run_one`, the only place that owns an env, an agent and a replay buffer, and what
it needs to resume exactly (checkpoints, env state, replay storage)."""
