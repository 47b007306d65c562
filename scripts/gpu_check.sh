#!/usr/bin/env bash
# Everything that needs a GPU, checked in about 6 minutes on one H200, on a machine that has torch
# with CUDA and nothing of this project installed (no package registry needed):
#
#   bash scripts/gpu_check.sh                  # results in ${OUT:-./gpu_check_out}
#   bash scripts/gpu_check.sh --cpu            # the same steps on the CPU at tiny sizes (tests this script)
#   bash scripts/gpu_check.sh --steps "smoke torchrun"     # some steps only
#
# Steps, each under its own `timeout`, all within BUDGET seconds (default 360: a step that cannot
# start in time is skipped, and the rest with it):
#   preflight    versions, GPUs; names every missing package and what to do (optional ones do not fail)
#   classifier   the stacked-digits classifier of the modes metric (trained and cached on first use)
#   cuda_tests   tests/test_cuda.py -m cuda: networks, training, sampler, metrics, CLIs, fast paths vs the CPU
#   smoke        train_ddgan.py with --metrics modes and 2 data-loader workers; SIGTERM to its process
#                group (exit 143, content.pth, one line on stderr); --resume to the end; test_ddgan.py
#   torchrun     train_ddgan.py under torchrun (NCCL with 2 processes when 2 GPUs are visible)
#   bench_*      benchmarks/bench.py for cifar10 and celeba_256: fp32, bf16 / fp16 + channels_last, compile
# It ends with a table (step, status, seconds, key figure), also in $OUT/summary.md; each step's
# output is in $OUT/{step}.log.  Exit status 1 if a step failed, timed out or was skipped.
#
# Environment: PYTHON (default python3), OUT, BUDGET (seconds), DDGAN_MODE_CLASSIFIER (a digits
# classifier file for the modes metric instead of the cache, e.g. to keep --cpu fast).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

PY=${PYTHON:-python3} BUDGET=${BUDGET:-360}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 DDGAN_NO_DOWNLOAD=1

ALL_STEPS="preflight classifier cuda_tests smoke torchrun bench_cifar10_fp32 bench_celeba_256_fp32
bench_cifar10_bf16_cl bench_celeba_256_bf16_cl bench_cifar10_fp16_cl bench_celeba_256_fp16_cl bench_cifar10_compile"
declare -A LIMIT=([preflight]=40 [classifier]=90 [cuda_tests]=180 [smoke]=90 [torchrun]=60 [bench_cifar10_fp32]=40
    [bench_celeba_256_fp32]=50 [bench_cifar10_bf16_cl]=40 [bench_celeba_256_bf16_cl]=50 [bench_cifar10_fp16_cl]=40
    [bench_celeba_256_fp16_cl]=50 [bench_cifar10_compile]=120)
MIN_START=15  # seconds a step needs at least

if [ "${1:-}" = --run-step ]; then  # one step, in a process of its own (under timeout); MODE and OUT inherited
    STEP=$2
else
    MODE=gpu STEPS=$ALL_STEPS STEP=
    while [ $# -gt 0 ]; do
        case $1 in
            --cpu) MODE=cpu ;;
            --steps) STEPS=$2; shift ;;
            -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
            *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
        esac
        shift
    done
    for step in $STEPS; do
        [ -n "${LIMIT[$step]:-}" ] || { echo "gpu_check.sh: unknown step $step; the steps: $ALL_STEPS" >&2; exit 2; }
    done
    OUT=${OUT:-./gpu_check_out}
    mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || { echo "gpu_check.sh: cannot create OUT=$OUT" >&2; exit 2; }
    export MODE OUT
fi

# The tiny model of tests/conftest.py (TINY_MODEL), for the smoke and torchrun runs.
MODEL=(--image_size 16 --num_channels_dae 8 --ch_mult 1 2 --num_res_blocks 1 --n_mlp 1 --nz 8 --z_emb_dim 16
       --t_emb_dim 16 --ngf 4)
CLASSIFIER=()
[ -n "${DDGAN_MODE_CLASSIFIER:-}" ] && CLASSIFIER=(--mode_classifier "$DDGAN_MODE_CLASSIFIER")
if [ "$MODE" = cpu ]; then
    DEVICE=cpu TEST_ARGS=(-m "not cuda" -k "networks and small")
    SMOKE=(--stacked_digits_length 64 --batch_size 4 --num_epoch 2 --max_iters_per_epoch 2 --metrics_samples 20)
    MODE_SAMPLES=20 BENCH_ARGS=(--device cpu --quick)
else
    DEVICE=cuda TEST_ARGS=(-m cuda)
    SMOKE=(--stacked_digits_length 512 --batch_size 16 --num_epoch 6 --max_iters_per_epoch 10 --metrics_samples 500)
    MODE_SAMPLES=2000 BENCH_ARGS=(--device cuda --warmup 1 --repeats 3)
fi

key() { printf '%s\n' "$*" > "$OUT/$STEP.key"; }
fail() { echo "FAILED: $*"; key "$*"; exit 1; }

# ----------------------------------------------------------------------------- the steps

step_preflight() {
    local found
    found=$("$PY" - "$MODE" <<'EOF'
import importlib.util, platform, sys

mode = sys.argv[1]
wheel = (f"pip download {{}} --only-binary=:all: --python-version {sys.version_info[0]}.{sys.version_info[1]} "
         f"--platform manylinux2014_{platform.machine()} -d wheels/ on a machine with a package registry, "
         "carry wheels/ here, then pip install --no-index --find-links wheels/ {}")
required = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "scipy": "scipy", "PIL": "pillow",
            "tqdm": "tqdm", "sklearn": "scikit-learn", "pytest": "pytest"}
optional = {"lmdb": ("lmdb", "LMDB data sets cannot be read; their tests are skipped"),
            "tensorboard": ("tensorboard", "train with --no-tensorboard (as this script does)"),
            "matplotlib": ("matplotlib", "python -m utils.plot_metrics cannot draw"),
            "xdist": ("pytest-xdist", "the test suite runs without -n")}
missing = [dist for module, dist in required.items() if importlib.util.find_spec(module) is None]
for dist in missing:
    print(f"{dist} missing (needed): carry a wheel: {wheel.format(dist, dist)}", file=sys.stderr)
for module, (dist, effect) in optional.items():
    if importlib.util.find_spec(module) is None:
        print(f"{dist} missing: {effect}; to add it, carry a wheel: {wheel.format(dist, dist)}", file=sys.stderr)
if "torch" in missing:
    sys.exit(1)
import torch

version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
if not (2, 4) <= version < (3, 0):
    print(f"torch {torch.__version__} is outside requirements.txt's range (>=2.4,<3)", file=sys.stderr)
    missing.append("torch>=2.4")
if mode == "gpu" and not torch.cuda.is_available():
    print("CUDA is not available to torch here: run on a GPU machine, or with --cpu", file=sys.stderr)
    sys.exit(1)
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if mode == "gpu" else []
names = f"{len(gpus)} x {gpus[0]}" if gpus else "no GPU used"
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), {names}")
sys.exit(1 if missing else 0)
EOF
)
    local rc=$?
    echo "$found"
    key "$found"
    return $rc
}

step_classifier() {
    if [ ${#CLASSIFIER[@]} -gt 0 ]; then
        key "given: $DDGAN_MODE_CLASSIFIER"
        return 0
    fi
    "$PY" -c "
import os
from metrics.classifiers import default_classifier_path, digits_classifier
cached = os.path.isfile(default_classifier_path())
print(f\"{'cached' if cached else 'trained'}, accuracy {digits_classifier()[1]:.4f}\")" | tee "$OUT/classifier.key"
}

step_cuda_tests() {
    "$PY" -m pytest -q -p no:cacheprovider -rfEs tests/test_cuda.py "${TEST_ARGS[@]}" | tee "$OUT/cuda_tests.txt"
    local rc=${PIPESTATUS[0]}
    key "$(tail -n 1 "$OUT/cuda_tests.txt" | tr -d '=' | sed 's/^ *//; s/ *$//')"
    return "$rc"
}

process_group() {  # the process group of a process (setsid made it lead its own)
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    set -- ${stat##*) }
    echo "$3"
}

check_one_stop_line() {  # train.err: no traceback, one line "stopped by SIGTERM ..." besides progress bars
    "$PY" - "$1" <<'EOF'
import sys

from tests.conftest import visible_lines

text = open(sys.argv[1], errors="replace").read()
lines = visible_lines(text)
if "Traceback" in text or len(lines) != 1 or not lines[0].startswith("stopped by SIGTERM"):
    sys.exit(f"expected one line 'stopped by SIGTERM ...' on stderr and no traceback, got:\n{text[-3000:]}")
EOF
}

step_smoke() {
    local dir="$OUT/smoke"
    local run="$dir/runs/dd_gan/stacked_digits/smoke"
    rm -rf "$dir" && mkdir -p "$dir"
    local flags=("${MODEL[@]}" "${SMOKE[@]}" "${CLASSIFIER[@]}" --dataset stacked_digits --num_workers 2 --device "$DEVICE"
                 --seed 7 --exp smoke --save_dir "$dir/runs" --metrics modes --metrics_every 1 --metrics_batch_size 100
                 --save_content --no-tensorboard)
    setsid "$PY" train_ddgan.py "${flags[@]}" > "$dir/train.out" 2> "$dir/train.err" &
    TRAINING=$!
    local pid=$TRAINING waited=0
    trap 'kill -KILL -- "-$TRAINING" 2>/dev/null' EXIT  # whatever ends this step ends the training too
    trap 'exit 143' TERM
    until [ "$(process_group "$pid")" = "$pid" ]; do  # setsid has made it lead a process group of its own
        sleep 0.1
        waited=$((waited + 1))
        [ "$waited" -lt 50 ] || fail "training is not in a process group of its own: setsid missing?"
    done
    until [ -s "$run/metrics.jsonl" ] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    kill -0 "$pid" 2>/dev/null || fail "training ended before its first evaluation could be interrupted: $dir/train.err"
    echo "first evaluation written; SIGTERM to process group $pid"
    kill -TERM -- "-$pid"
    wait "$pid"
    local rc=$?
    [ "$rc" = 143 ] || fail "SIGTERM: exit $rc, not 143 ($dir/train.err)"
    [ -f "$run/content.pth" ] || fail "SIGTERM: no content.pth in $run"
    check_one_stop_line "$dir/train.err" || fail "SIGTERM: stderr is not one line ($dir/train.err)"
    echo "exit 143, content.pth saved, one line: $(tail -c 300 "$dir/train.err" | tr '\r' '\n' | tail -n 1)"
    "$PY" train_ddgan.py "${flags[@]}" --resume > "$dir/resume.out" 2> "$dir/resume.err" ||
        fail "--resume failed: $dir/resume.err"
    local last
    last=$(ls "$run" | sed -n 's/^netG_\([0-9]*\)\.pth$/\1/p' | sort -n | tail -n 1)
    [ -n "$last" ] || fail "no netG_*.pth in $run"
    "$PY" test_ddgan.py --checkpoint "$run/netG_$last.pth" --dataset stacked_digits --device "$DEVICE" --batch_size 100 \
        --num_samples 200 --sample_dir "$dir/samples" --mode_coverage --num_mode_samples "$MODE_SAMPLES" "${CLASSIFIER[@]}" \
        > "$dir/test_ddgan.out" 2> "$dir/test_ddgan.err" || fail "test_ddgan.py failed: $dir/test_ddgan.err"
    cat "$dir/test_ddgan.out"
    local modes
    modes=$(sed -n 's/^modes covered = \([0-9]*\) \/ 1000, reverse KL = \([0-9.]*\).*/modes \1, KL \2/p' "$dir/test_ddgan.out")
    key "SIGTERM: 143 + content.pth; resumed to epoch $last; $modes"
}

step_torchrun() {
    local dir="$OUT/torchrun" processes=1
    if [ "$DEVICE" = cuda ]; then
        processes=$("$PY" -c "import torch; print(min(2, torch.cuda.device_count()))")
    fi
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && "$PY" -m torch.distributed.run --standalone --nproc_per_node "$processes" "$REPO/train_ddgan.py" \
        "${MODEL[@]}" --dataset stacked_digits --stacked_digits_length 256 --batch_size 16 --num_workers 0 \
        --device "$DEVICE" --seed 7 --num_epoch 1 --max_iters_per_epoch 5 --save_content --no-tensorboard) ||
        fail "torchrun failed (see above)"
    local world
    world=$("$PY" -c "
import sys
from training import content
print(content.load(sys.argv[1])['world_size'])" "$dir/saved_info/dd_gan/stacked_digits/experiment_cifar_default/content.pth") ||
        fail "no readable content.pth"
    [ "$world" = "$processes" ] || fail "content.pth says $world processes, not $processes"
    local backend=nccl
    [ "$DEVICE" = cpu ] && backend=gloo
    [ "$processes" = 1 ] && backend="no process group (1 process)"
    key "$processes process(es), $backend: trained, content.pth"
}

bench() {  # CONFIG, then bench.py flags
    local config=$1
    shift
    [ "$MODE" = cpu ] && config=tiny
    "$PY" benchmarks/bench.py --config "$config" "${BENCH_ARGS[@]}" --results "$OUT/bench_results.md" "$@" |
        tee "$OUT/$STEP.jsonl"
    local rc=${PIPESTATUS[0]}
    key "$("$PY" -c "
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith('{')]
peaks = [r['peak_gib'] for r in rows if r['peak_gib'] is not None]
print(', '.join(f\"{r['what']} {r['img_per_s']:.1f} img/s\" for r in rows) + (f', peak {max(peaks):.2f} GiB' if peaks else ''))
" "$OUT/$STEP.jsonl")"
    return "$rc"
}

step_bench_cifar10_fp32() { bench cifar10; }
step_bench_celeba_256_fp32() { bench celeba_256 --sample_batch 25; }
step_bench_cifar10_bf16_cl() { bench cifar10 --amp bf16 --channels_last; }
step_bench_celeba_256_bf16_cl() { bench celeba_256 --sample_batch 25 --amp bf16 --channels_last; }
step_bench_cifar10_fp16_cl() { bench cifar10 --amp fp16 --channels_last; }
step_bench_celeba_256_fp16_cl() { bench celeba_256 --sample_batch 25 --amp fp16 --channels_last; }
step_bench_cifar10_compile() {  # sampling only: compiling the training step takes minutes
    if [ "$MODE" = cpu ]; then
        key "not on the CPU (inductor builds C++ for minutes)"
        return 0
    fi
    bench cifar10 --what sample --compile
}

# ----------------------------------------------------------------------------- running them

if [ -n "${STEP:-}" ]; then
    "step_$STEP"
    exit $?
fi

rm -f "$OUT"/*.key "$OUT/summary.tsv"
start=$SECONDS
failed=0
runner=
trap '[ -n "$runner" ] && kill -TERM "$runner" 2>/dev/null; exit 130' INT TERM  # timeout passes it on to the step
for step in $STEPS; do
    left=$((BUDGET - (SECONDS - start)))
    if [ "$left" -lt "$MIN_START" ]; then
        printf '%s\tskipped\t0\tout of time (BUDGET=%s s)\n' "$step" "$BUDGET" >> "$OUT/summary.tsv"
        failed=1
        continue
    fi
    limit=${LIMIT[$step]}
    [ "$left" -ge "$limit" ] || limit=$left
    echo "=== $step (limit ${limit} s)"
    began=$SECONDS
    : > "$OUT/$step.log"
    timeout -k 10 "$limit" bash "$0" --run-step "$step" > "$OUT/$step.log" 2>&1 &
    runner=$!
    tail -n +1 -f --pid "$runner" "$OUT/$step.log"
    wait "$runner"
    rc=$?
    runner=
    seconds=$((SECONDS - began))
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout ;;
        *) status="failed ($rc)" ;;
    esac
    [ "$rc" = 0 ] || failed=1
    figure=$(cat "$OUT/$step.key" 2>/dev/null || tail -n 1 "$OUT/$step.log")
    printf '%s\t%s\t%s\t%s\n' "$step" "$status" "$seconds" "$figure" >> "$OUT/summary.tsv"
    if [ "$step" = preflight ] && [ "$rc" != 0 ]; then
        echo "preflight failed: the other steps cannot run (see above)"
        break
    fi
done

{
    echo "gpu_check.sh ($MODE mode), $(date '+%Y-%m-%d %H:%M'), $((SECONDS - start)) s in all"
    echo
    echo "| step | status | seconds | key figure |"
    echo "|---|---|---|---|"
    awk -F '\t' '{printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4}' "$OUT/summary.tsv"
} > "$OUT/summary.md"
echo
cat "$OUT/summary.md"
exit "$failed"
