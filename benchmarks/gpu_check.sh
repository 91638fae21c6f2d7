#!/usr/bin/env bash
# The GPU check of issue 20, under 8 minutes on one GPU: per-update time of every agent at paper settings (eager,
# compiled, compiled + CUDA graphs), act latency, peak CUDA memory, and total env steps/s of 1, 2, 4, 8 packed SDAC
# runs. Run it from anywhere on a machine with a GPU and paste the tables into docs/benchmarks.md:
#   benchmarks/gpu_check.sh                        # cuda (or --device cuda:1)
#   benchmarks/gpu_check.sh --device cpu --quick   # seconds, meaningless figures: checks the script still runs
# Options are those of benchmarks/gpu_check.py (--help).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "${PYTHON:-python}" "$here/gpu_check.py" "$@"
