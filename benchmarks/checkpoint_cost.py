"""Cost of a checkpoint (seconds, bytes) with the replay buffer at 100k and 1M transitions, Hopper and Humanoid.

    python benchmarks/checkpoint_cost.py [--sizes 100000,1000000] [--envs Hopper,Humanoid] [--dir /tmp/ckpt-bench]

Uses the real training-loop code path (``Trainer.save_checkpoint``: flush the memory-mapped replay, then an
atomic torch.save of agent, optimizers, RNGs, env states and counters) under the SDAC-paper protocol (5 envs).
The buffer is filled with random rows (their values do not change the cost), then 5 % of the capacity is
written again, as between two checkpoints at the default interval, and a checkpoint is timed. For contrast it
also times what a checkpoint that rewrites the whole buffer would cost (``torch.save`` of the arrays).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from bench.jobs import RunDir
from bench.plan import layers
from bench.plan.spec import SweepSpec
from bench.train.trainer import Trainer


def fill(buffer, rows: int, rng: np.random.Generator, chunk: int = 50_000) -> None:
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        obs = rng.standard_normal((n, buffer.obs.shape[1]), dtype=np.float32)
        act = rng.uniform(-1, 1, (n, buffer.actions.shape[1])).astype(np.float32)
        buffer.add(obs, act, rng.standard_normal(n, dtype=np.float32), obs, np.zeros(n, np.float32))


def measure(env: str, size: int, root: Path) -> dict:
    spec = SweepSpec(name="ckpt", algos=["sac"], envs=[env], seeds=[0], protocol="sdac-paper")
    budget = {"total_steps": size, "replay_size": size, "eval_every": size, "log_every": size}
    job = spec.expand(root, [layers.from_protocol_flags(budget)])[0]
    directory = Path(job.run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(job, RunDir(directory), lambda event: None)
    rng = np.random.default_rng(0)
    fill(trainer.buffer, size, rng)
    began = time.perf_counter()
    trainer.save_checkpoint()  # first checkpoint: every page of the buffer is dirty
    first = time.perf_counter() - began
    fill(trainer.buffer, size // 20, rng)  # 5 % new rows, as between two default-interval checkpoints
    began = time.perf_counter()
    trainer.save_checkpoint()
    periodic = time.perf_counter() - began
    ckpt_bytes = (directory / "ckpt" / "last.pt").stat().st_size
    replay_bytes = sum(p.stat().st_size for p in (directory / "replay").iterdir())
    began = time.perf_counter()
    naive = directory / "naive.pt"
    torch.save({name: torch.from_numpy(np.asarray(getattr(trainer.buffer, name)))
                for name in ("obs", "actions", "rewards", "next_obs", "terminated")}, naive)
    naive_s = time.perf_counter() - began
    naive_bytes = naive.stat().st_size
    trainer.close()
    shutil.rmtree(root / "ckpt")
    return {"env": job.env_id, "transitions": size, "first_s": first, "periodic_s": periodic,
            "ckpt_mb": ckpt_bytes / 2**20, "replay_mb": replay_bytes / 2**20,
            "flushed_mb": replay_bytes / 2**20 / 20, "naive_s": naive_s, "naive_mb": naive_bytes / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--envs", default="Hopper,Humanoid")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/ckpt-bench"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| env | transitions | periodic checkpoint (s) | checkpoint file (MB) | replay rows flushed (MB) "
          "| first checkpoint, whole buffer dirty (s) | replay on disk (MB) | rewrite whole buffer instead (s, MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for env in args.envs.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            r = measure(env, size, args.dir)
            print(f"| {r['env']} | {r['transitions']:,} | {r['periodic_s']:.2f} | {r['ckpt_mb']:.1f} | "
                  f"{r['flushed_mb']:.0f} | {r['first_s']:.2f} | {r['replay_mb']:.0f} | "
                  f"{r['naive_s']:.2f} s, {r['naive_mb']:.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
