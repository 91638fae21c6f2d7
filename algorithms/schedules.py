"""Schedules over update counts shared by the agents: the policy learning-rate decay of the "relax" code base
(SDAC, DPMD and the SDAC repo's copy of DACER) and the interval of a periodic step sized to the run's budget.

The policy lr schedule is the released code's ``optax.schedules.linear_schedule(init_value=lr,
end_value=lr_schedule_end, transition_steps=5e4, transition_begin=2.5e4)`` (SDAC repo ``relax/algorithm/sdac.py``,
``dpmd.py:57-62``, ``dacer.py:53-58``). optax evaluates it at the policy optimizer's own update count, which
advances only on the updates that step the policy, so ``begin`` and ``end`` count policy updates.
"""

from __future__ import annotations

from typing import Any

import torch

from algorithms import config as cfg


def linear_decay(step: int, start: float, end: float, begin: int, finish: int) -> float:
    """``start`` until ``begin``, linear to ``end`` at ``finish``, then ``end``."""
    if step <= begin:
        return start
    if step >= finish:
        return end
    return start + (end - start) * (step - begin) / (finish - begin)


def policy_lr(config: Any, policy_updates: int) -> float:
    """The policy learning rate before policy update number ``policy_updates`` (0 = the first) of a config with
    ``policy_lr``, ``policy_lr_end`` (None: constant), ``policy_lr_decay_begin`` and ``policy_lr_decay_end``."""
    c = config
    end = c.policy_lr if c.policy_lr_end is None else c.policy_lr_end
    return linear_decay(policy_updates, c.policy_lr, end, c.policy_lr_decay_begin, c.policy_lr_decay_end)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def check_policy_lr_window(config: Any) -> None:
    """For ``__post_init__``: the decay must not end before it begins."""
    cfg.check(config.policy_lr_decay_begin <= config.policy_lr_decay_end,
              f"need policy_lr_decay_begin <= policy_lr_decay_end, got {config.policy_lr_decay_begin} > "
              f"{config.policy_lr_decay_end}")


def budget_interval(planned_updates: int | None, steps: int | None, fallback: int) -> int:
    """Updates between two occurrences of a periodic step that should happen ``steps`` times over a run of
    ``planned_updates`` updates: ``max(1, planned_updates // steps)``; ``fallback`` (a fixed interval) when either is
    None. With the first occurrence at update 0, a run of N updates has ceil(N / interval) of them, which is
    ``steps`` when N is a multiple of ``steps`` and ``steps + ceil((N mod steps) / interval)`` otherwise: at most
    ``steps + 1`` when N >= steps^2, at most ``2 steps - 1`` for shorter runs (the floor then shortens a small
    interval by a large fraction). N < steps gives one occurrence per update."""
    if planned_updates is None or steps is None:
        return fallback
    return max(1, planned_updates // steps)
