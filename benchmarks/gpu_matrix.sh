#!/usr/bin/env bash
# The GPU measurements of the performance issue in one go: cifar10 and celeba_256, the default
# fp32 path and bf16 + channels_last + compile, sampling (100 images) and training (with and
# without R1), each profiled once.  Rows go to benchmarks/RESULTS.md, profiles to $1
# (default benchmarks/profiles).  Its duration on a GPU has not been measured yet; the four
# bench.py commands are independent, so they can also be run one at a time.
#
#   bash benchmarks/gpu_matrix.sh [PROFILE_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
profiles=${1:-benchmarks/profiles}
for config in cifar10 celeba_256; do
    "$python" benchmarks/bench.py --config "$config" --device cuda --profile "$profiles"
    "$python" benchmarks/bench.py --config "$config" --device cuda --amp bf16 --channels_last --compile \
        --profile "$profiles"
done
