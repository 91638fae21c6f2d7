"""Print the reference tables of docs/configuration.md: every algorithm's config fields with their defaults, the
per-environment blocks of algorithms/configs/<algo>.yaml, and what the CPU overlay files change.

    python scripts/config_table.py            # the Markdown that goes between the config-table markers
    python scripts/config_table.py --check    # exit 1 if docs/configuration.md is out of date

Defaults come from the code (dataclass defaults, then the YAML ``default`` block); only the meanings are written
here. tests/test_config_table.py runs the check, so a changed default or a new field fails CI until the page is
regenerated (``python scripts/config_table.py --write``).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import algorithms  # noqa: E402
from algorithms import base, config as cfg  # noqa: E402

DOC = ROOT / "docs" / "configuration.md"
BEGIN, END = "<!-- config-table:begin (scripts/config_table.py) -->", "<!-- config-table:end -->"
OVERLAYS = ("cpu-smoke.yaml", "small-nets.yaml")

# Meaning of each field; an entry under an algorithm's name wins over the shared one.
SHARED = {
    "batch_size": "transitions per gradient update",
    "gamma": "discount factor",
    "hidden": "hidden layer widths of every MLP (policy / noise predictor and each critic); `-o hidden=64,64`",
    "activation": "hidden activation: relu, gelu, mish, tanh, silu or elu",
    "n_critics": "number of Q networks; targets use their minimum",
    "actor_lr": "Adam learning rate of the policy",
    "critic_lr": "Adam learning rate of the critics",
    "alpha_lr": "Adam learning rate of log alpha",
    "tau": "Polyak rate of the critic targets",
    "reward_scale": "rewards are multiplied by this inside the update (logged returns are unscaled)",
    "target_update_every": "critic targets are updated every this many updates",
    "init_alpha": "initial alpha",
    "target_entropy_scale": "target entropy = -target_entropy_scale x action dim",
    "diffusion_steps": "T, denoising steps of the reverse chain",
    "beta_schedule": "noise schedule: linear, vp or cosine",
    "beta_schedule_scale": "betas are multiplied by this",
    "init_noise_scale": "std of the chain's start a_T",
    "particles": "best-of-N: reverse-chain samples per state, the one with the highest min-Q is taken "
                 "(acting, critic targets, proposals)",
    "policy_lr": "Adam learning rate of the policy (noise predictor)",
    "policy_delay": "the policy is updated every this many updates",
    "noise_scale": "exploration noise std = noise_scale x alpha, added to the chain's action",
    "alpha_update_every": "one Adam step on log alpha every this many updates",
}
PER_ALGO: dict[str, dict[str, str]] = {
    "sac": {
        "init_alpha": "initial temperature alpha",
        "autotune_alpha": "learn alpha towards the target entropy; false keeps init_alpha fixed",
        "log_std_min": "lower clamp of the policy's log std",
        "log_std_max": "upper clamp of the policy's log std",
        "tanh_log_prob_correction": "subtract sum log(1 - tanh(u)^2) from the Gaussian log-prob (the SDAC "
                                    "code's SAC baseline omits it)",
        "actor_update_every": "the actor and alpha are updated every this many updates",
        "alpha_lr": "Adam learning rate of log alpha (the temperature)",
    },
    "sdac": {
        "critic_lr": "Adam learning rate of the twin critics",
        "policy_lr_end": "policy learning rate at the end of its linear decay",
        "policy_lr_decay_begin": "policy update count where the decay starts",
        "policy_lr_decay_end": "policy update count where the decay ends",
        "ema_tau": "Polyak rate of the EMA policy that acts and is evaluated",
        "init_alpha": "initial alpha (sets the exploration noise and lambda; not a SAC temperature)",
        "q_weight_scale": "lambda = alpha / q_weight_scale in the weights softmax(Q / lambda)",
        "reverse_samples": "K, reverse-chain samples per state that the score-matching loss is weighted over",
    },
    "dpmd": {
        "q_weight_scale": "lambda = alpha / q_weight_scale in the weights exp(Q / lambda)",
        "old_policy_samples": "G, samples of the old policy per state for the self-normalised weights",
    },
    "dacer": {
        "critic": "distributional (DSAC-T mean and std, the released code) or double_q (the paper's eq. 11)",
        "policy_lr": "Adam learning rate of the policy (the chain, trained by backpropagation through it)",
        "std_ema_rate": "running-std rate of the distributional critic",
        "init_alpha": "initial alpha (sets only the exploration noise)",
        "entropy_states": "states per entropy estimate",
        "entropy_samples": "actions sampled per state for the GMM fit",
        "gmm_components": "components of the GMM whose entropy estimates the policy's",
        "alpha_update_every": "GMM entropy estimate and one Adam step on log alpha every this many updates",
    },
    "dacer2": {
        "qgrad_weight": "eta, weight of the Q-gradient-field loss",
        "qgrad_target": "score (regress the implied score) or eps (regress the noise prediction)",
        "qgrad_direction": "ascent (target along +grad Q) or descent",
        "qgrad_slope": "w(k) = exp(slope (k + 1) / T + offset): slope",
        "qgrad_offset": "w(k): offset",
        "qgrad_normalize": "divide grad Q by its norm",
    },
    "cpql": {
        "max_grad_norm": "global-norm clip of actor and critic gradients; 0 turns it off",
        "bc_weight": "alpha in the paper: weight of the consistency (BC) loss",
        "q_weight": "eta in the paper: weight of the -Q loss",
        "bc_loss": "consistency (the paper's loss) or reconstruction (what the released code optimises)",
        "sigma_min": "Karras/EDM noise grid: smallest sigma",
        "sigma_max": "largest sigma (the start of sampling)",
        "sigma_data": "EDM data std in the consistency-function scalings",
        "rho": "Karras grid exponent",
        "num_scales": "N, noise levels of the grid",
        "sampling_steps": "network evaluations per action (1 = one-step sampling)",
        "candidates": "actions sampled per state when acting; one is drawn from softmax(min-Q / temperature)",
        "selection_temperature": "temperature of that softmax",
        "eval_selection": "deterministic acting: softmax (seeded draw) or greedy (argmax)",
        "ema_decay": "decay of the EMA copies of the policy and the critics",
        "ema_every": "EMA update every this many updates",
        "ema_start": "first update with an EMA step (targets stay at their initial weights before)",
    },
}
PER_ALGO["dacer2"] = {**PER_ALGO["dacer"], **PER_ALGO["dacer2"]}
PER_ALGO["dpmd"] = {**PER_ALGO["sdac"], **PER_ALGO["dpmd"]}
del PER_ALGO["dpmd"]["reverse_samples"]


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def meaning(algo: str, key: str) -> str:
    text = PER_ALGO.get(algo, {}).get(key) or SHARED.get(key)
    if text is None:
        raise KeyError(f"scripts/config_table.py: no meaning written for {algo}.{key}")
    return text


def algorithm_table(algo: str) -> list[str]:
    config = base.resolve_config(algo)
    lines = [f"### `{algo}`", "", "| field | default | meaning |", "|---|---|---|"]
    for field in dataclasses.fields(config):
        lines.append(f"| `{field.name}` | {_value(getattr(config, field.name))} | {meaning(algo, field.name)} |")
    blocks = {name: values for name, values in cfg.read_yaml(base.config_file(algo)).items() if name != "default"}
    if blocks:
        lines.append("")
        lines.append(f"Per-environment blocks in `algorithms/configs/{algo}.yaml`: "
                     + "; ".join(f"`{name}`: " + ", ".join(f"{k}={_value(v)}" for k, v in values.items())
                                 for name, values in blocks.items()) + ".")
    return lines


def overlay_table() -> list[str]:
    lines = ["| file | algorithm | field: default -> overlay |", "|---|---|---|"]
    for name in OVERLAYS:
        for algo, values in cfg.read_yaml(base.CONFIG_DIR / name).items():
            config = base.resolve_config(algo)
            changes = ", ".join(f"{key}: {_value(getattr(config, key))} -> {_value(value)}" for key, value in values.items())
            lines.append(f"| `{name}` | `{algo}` | {changes} |")
    return lines


def render() -> str:
    lines = [BEGIN, ""]
    for algo in algorithms.available_algorithms():
        if base.get_algorithm(algo).__module__.startswith("algorithms."):
            lines += algorithm_table(algo) + [""]
    lines += ["### The CPU overlays", ""] + overlay_table() + ["", END]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + block + text[end:]


def main(argv: list[str]) -> int:
    block = render()
    if "--check" in argv or "--write" in argv:
        text = DOC.read_text()
        updated = replace_block(text, block)
        if "--write" in argv:
            DOC.write_text(updated)
            return 0
        if updated != text:
            print(f"{DOC} is out of date: run python scripts/config_table.py --write", file=sys.stderr)
            return 1
        return 0
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
