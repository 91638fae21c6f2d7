"""Measure the return of a uniform random policy per environment: the 0 of table normalization.

    python benchmarks/random_returns.py --episodes 100 > /tmp/random.yaml

Episodes use reset seeds 0..episodes-1 and actions drawn uniformly from the env's action space with a
NumPy generator seeded 0, so the figures are reproducible. The output is the `random` block of
bench/data/normalization.yaml (copy the figures there and bump its `version`).
"""

from __future__ import annotations

import argparse
import sys
import time

import gymnasium as gym
import numpy as np

from bench.plan.envs import SHORT_NAMES, resolve_env_id


def random_return(env_id: str, episodes: int) -> tuple[float, float, float]:
    """(mean, std, mean episode length) of the undiscounted return of uniform random actions."""
    env = gym.make(resolve_env_id(env_id))  # resolving registers namespaced suites (dm_control/...) first
    env.action_space.seed(0)
    returns, lengths = [], []
    for episode in range(episodes):
        env.reset(seed=episode)
        total, length, done = 0.0, 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            length += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
    env.close()
    return float(np.mean(returns)), float(np.std(returns)), float(np.mean(lengths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--envs", default=",".join(SHORT_NAMES.values()), help="comma-separated env ids")
    args = parser.parse_args()
    print(f"# uniform random policy, {args.episodes} episodes per env (reset seeds 0..{args.episodes - 1}), "
          f"gymnasium {gym.__version__}")
    for env_id in args.envs.split(","):
        start = time.perf_counter()
        mean, std, length = random_return(env_id, args.episodes)
        print(f"{env_id}: {{return: {mean:.2f}, std: {std:.2f}, episode_length: {length:.1f}}}", flush=True)
        print(f"  {env_id} took {time.perf_counter() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
