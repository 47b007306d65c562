#!/usr/bin/env bash
# Create ./.venv (once) with the CPU-usable torch/torchvision pair and the requirements.
# PyPI's default torchvision does not import next to a CPU-only torch; this pinned pair does.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check \
    torch==2.14.1 torchvision==0.29.2 -r requirements-dev.txt
