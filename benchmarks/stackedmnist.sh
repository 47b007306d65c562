#!/usr/bin/env bash
# The StackedMNIST benchmark (README, "StackedMNIST"): train --dataset stackmnist from real MNIST for a
# wall time, scoring modes / reverse KL on 26,000 samples every few epochs, then draw and print the curve.
#   bash benchmarks/stackedmnist.sh cpu 30m                  # the 2-core CPU recipe
#   bash benchmarks/stackedmnist.sh gpu 10m                  # the paper's configuration on one GPU
#   bash benchmarks/stackedmnist.sh cpu 30m --datadir DIR --exp NAME -- --seed 7   # DIR holds MNIST/raw
#   bash benchmarks/stackedmnist.sh cpu 30m --dry            # print the commands only
# Python: $PYTHON, else the repository's .venv (scripts/setup_env.sh), else python3.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=python3
    [[ -x "$repo/.venv/bin/python" ]] && PYTHON="$repo/.venv/bin/python"
fi
exec "$PYTHON" "$repo/benchmarks/stackedmnist.py" "$@"
