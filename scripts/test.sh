#!/usr/bin/env bash
# Install what is needed (./.venv), lint, and run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check .
# Two workers on two cores: one thread each (set OMP_NUM_THREADS to override)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 "$@"
