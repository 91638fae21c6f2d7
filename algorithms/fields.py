"""Config fields that several algorithms have, each meaning and valid range written once.

An algorithm's config declares ``hidden: tuple[int, ...] = shared("hidden", (256, 256))``; a field of its own
is ``cfg.field(default, meaning, range)``. ``AgentConfig.__post_init__`` checks every declared range and
scripts/config_table.py prints the meanings in docs/configuration.md.
"""

from __future__ import annotations

from typing import Any

from algorithms.config import Range, at_least, field, interval, non_negative, one_of, or_none, positive, positive_widths
from algorithms.diffusion import BETA_SCHEDULES
from algorithms.nets import ACTIVATIONS

_SHARED: dict[str, tuple[str, Range | None]] = {
    # Networks and critics.
    "hidden": ("hidden layer widths of every MLP (policy / noise predictor and each critic); `-o hidden=64,64`",
               positive_widths),
    "activation": ("hidden activation: relu, gelu, mish, tanh, silu or elu", one_of(sorted(ACTIVATIONS))),
    "n_critics": ("number of Q networks; targets use their minimum", at_least(1)),
    "actor_lr": ("Adam learning rate of the policy", positive),
    "critic_lr": ("Adam learning rate of the critics", positive),
    "policy_lr": ("Adam learning rate of the policy (noise predictor)", positive),
    # Policy learning-rate schedule (schedules.py): constant policy_lr until policy update decay_begin, linear to
    # policy_lr_end at policy update decay_end, then constant; policy_lr_end null = no decay.
    "policy_lr_end": ("policy learning rate at the end of its linear decay; null = policy_lr (constant)",
                      or_none(positive)),
    "policy_lr_decay_begin": ("policy update count where the policy lr decay starts", non_negative),
    "policy_lr_decay_end": ("policy update count where the policy lr decay ends", non_negative),
    "policy_delay": ("the policy is updated every this many updates", at_least(1)),
    "tau": ("Polyak rate of the critic targets", interval(0, 1)),
    "target_update_every": ("critic targets are updated every this many updates", at_least(1)),
    "reward_scale": ("rewards are multiplied by this inside the update (logged returns are unscaled)", positive),
    # Budget of the run.
    "planned_updates": ("gradient updates the run will make; filled in by the harness from the protocol (null in "
                        "your own loop); agents that declare it scale update-count schedules to it",
                        or_none(at_least(1))),
    # Temperature (temperature.py).
    "init_alpha": ("initial alpha", positive),
    "alpha_lr": ("Adam learning rate of log alpha", positive),
    "alpha_update_every": ("one Adam step on log alpha every this many updates", at_least(1)),
    "target_entropy_scale": ("target entropy = -target_entropy_scale x action dim", None),
    "noise_scale": ("exploration noise std = noise_scale x alpha, added to the chain's action", positive),
    # Diffusion policies (diffusion.py).
    "diffusion_steps": ("T, denoising steps of the reverse chain", at_least(1)),
    "beta_schedule": ("noise schedule: linear, vp or cosine", one_of(BETA_SCHEDULES)),
    "beta_schedule_scale": ("betas are multiplied by this", positive),
    "init_noise_scale": ("std of the chain's start a_T", positive),
}


def shared(name: str, default: Any, help: str | None = None, check: Range | None = None) -> Any:
    """The shared field ``name`` with this default; ``help`` / ``check`` replace its meaning / range where one
    algorithm's differs."""
    meaning, valid = _SHARED[name]
    return field(default, help or meaning, check or valid)
