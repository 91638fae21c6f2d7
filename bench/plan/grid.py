"""The names of a grid as typed: seeds, comma-separated lists, suite names."""

from __future__ import annotations

import re
from typing import Sequence

from algorithms.config import ConfigError


def parse_seeds(text: str | int) -> list[int]:
    """``10`` -> 0..9; ``3,5,7`` -> those; ``0-4`` -> 0..4 inclusive; parts can be mixed (``0-2,7``)."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        count = int(text)
        if count < 1:
            raise ConfigError(f"--seeds {text!r}: need at least one seed")
        return list(range(count))
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)-(\d+)", part)
        if match and int(match[1]) <= int(match[2]):
            seeds.extend(range(int(match[1]), int(match[2]) + 1))
        elif re.fullmatch(r"\d+", part):
            seeds.append(int(part))
        else:
            raise ConfigError(
                f"--seeds {text!r}: cannot read {part!r}; use a count (10 -> seeds 0..9), a list (3,5,7) "
                "or an inclusive range (0-4)"
            )
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r} lists a seed twice")
    return seeds


def split_names(text: str | Sequence[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else [part for item in text for part in item.split(",")]
    names = [item.strip() for item in items if item.strip()]
    if not names:
        raise ConfigError("empty list of names")
    return names


def check_suite_name(suite: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", suite):
        raise ConfigError(f"suite name {suite!r}: use letters, digits, '.', '_' and '-' (it names a folder)")


def unique(kind: str, names: list[str]) -> list[str]:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"{kind} {', '.join(repeated)} is listed twice")
    return names
