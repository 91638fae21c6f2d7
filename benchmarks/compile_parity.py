"""Compiled vs eager on every built-in agent: ``algorithms.testing.compiled_parity`` (4 updates and acting, small
networks and chains), the largest absolute differences and the compile time of each. CI runs it on SDAC and DACER
only (tests/algorithms/test_compiled.py), since compiling all ten takes minutes on a small CPU.

    python benchmarks/compile_parity.py
    python benchmarks/compile_parity.py --algos dipo,qvpo
"""

from __future__ import annotations

import argparse

import torch

import algorithms
from algorithms.compiled import compile_seconds
from algorithms.testing import COMPILE_TOLERANCE, compiled_parity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", default=",".join(algorithms.available_algorithms()))
    parser.add_argument("--updates", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}; tolerance {COMPILE_TOLERANCE}; {args.updates} updates, then acting\n")
    print("| algo | max abs diff, losses | weights and optimizer state | actions | compile s (wall) | result |")
    print("|---|---|---|---|---|---|")
    for name in args.algos.split(","):
        before = compile_seconds()
        try:
            differences, result = compiled_parity(name, args.updates), "same"
        except AssertionError as error:
            differences, result = {}, f"DIFFERS: {str(error).splitlines()[0]}"
        cells = " | ".join(f"{differences[k]:.1e}" if k in differences else "-" for k in ("losses", "state", "actions"))
        print(f"| {name} | {cells} | {compile_seconds() - before:.0f} | {result} |", flush=True)


if __name__ == "__main__":
    main()
