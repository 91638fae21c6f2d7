"""Numbers given on the command line, checked when the flag is parsed: a value out of range is refused with one line
naming the flag, the value and the range, never clamped or replaced, so what a run records is what it ran with.
Also the "did you mean" hint that every unknown name gets."""

from __future__ import annotations

import argparse
import difflib
import math
from typing import Callable, Iterable


def integer(minimum: int, meaning: str = "") -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{meaning}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


COUNT = integer(1)
NON_NEGATIVE = integer(0)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near-miss of one of ``choices``; "" when nothing is close."""
    close = difflib.get_close_matches(str(name), [str(choice) for choice in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line (``bench run: error: argument --steps: must be >= 1, got 0``) instead of the whole
    usage block, which hides the line that matters; ``--help`` still prints everything."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
