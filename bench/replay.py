"""Uniform replay buffer: preallocated numpy ring storage, sampled with its own seeded generator."""

from __future__ import annotations

import numpy as np
import torch

from algorithms.base import Batch


class ReplayBuffer:
    def __init__(self, obs_dim: int, act_dim: int, capacity: int, seed: int, device: torch.device | str = "cpu") -> None:
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, act_dim), dtype=np.float32)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.position = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> None:
        """Add a batch of transitions (one per parallel env)."""
        n = len(obs)
        index = (self.position + np.arange(n)) % self.capacity
        self.obs[index] = obs
        self.actions[index] = actions
        self.rewards[index] = rewards
        self.next_obs[index] = next_obs
        self.terminated[index] = terminated
        self.position = int((self.position + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        index = self.rng.integers(0, self.size, size=batch_size)
        # One host->device copy per field; pinned/non-blocking copies only matter on CUDA.
        to = lambda array: torch.from_numpy(array[index]).to(self.device, non_blocking=True)  # noqa: E731
        return Batch(to(self.obs), to(self.actions), to(self.rewards), to(self.next_obs), to(self.terminated))
