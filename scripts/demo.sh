#!/usr/bin/env bash
# Install what is needed (./.venv), train DDGAN on the bundled stacked digits (scikit-learn's
# 8x8 digits as RGB triplets, 1000 modes) on the CPU, scoring mode coverage every
# METRICS_EVERY epochs, then sample a grid and score the final weights on 26,000 samples.
# EPOCHS (default 26, 62 iterations of batch 256 each) sets the length; EXP the run name.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
PY=.venv/bin/python
EXP=${EXP:-demo_stacked_digits}
EPOCHS=${EPOCHS:-26}
METRICS_EVERY=${METRICS_EVERY:-4}
RUN="saved_info/dd_gan/stacked_digits/$EXP"
MODEL=(--dataset stacked_digits --exp "$EXP" --image_size 8 --num_channels_dae 32 --ch_mult 1 2
       --num_res_blocks 1 --attn_resolutions --nz 16 --z_emb_dim 64 --t_emb_dim 64 --n_mlp 2 --ngf 16
       --num_timesteps 4)
# The recipe measured best on 2 CPU cores (README, "The demo"): batch 256 over 16,000 stacks,
# EMA 0.998, the cosine learning-rate decay of the reference.
RECIPE=(--batch_size 256 --stacked_digits_length 16000 --lr_g 2e-4 --lr_d 1.25e-4 --r1_gamma 0.02
        --lazy_reg 15 --use_ema --ema_decay 0.998)
rm -rf "$RUN"  # a fresh run each time
start=$(date +%s)
$PY train_ddgan.py "${MODEL[@]}" "${RECIPE[@]}" --num_epoch "$EPOCHS" --save_ckpt_every "$EPOCHS" \
    --num_workers 0 --no-tensorboard \
    --metrics modes --metrics_every "$METRICS_EVERY" --metrics_samples 26000 --metrics_batch_size 1000
end=$(date +%s)
# Training time = wall time of train_ddgan.py less the evaluations it ran (their "seconds").
$PY - "$RUN/metrics.jsonl" "$start" "$end" <<'TABLE'
import json, sys
from datetime import datetime
path, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
records = [json.loads(line) for line in open(path)]
evaluation = 0.0
print("epoch  iterations  training s  modes  reverse KL")
for r in records:
    evaluation += r["seconds"]
    at = datetime.strptime(r["time"], "%Y-%m-%dT%H:%M:%S%z").timestamp() - start - evaluation
    print(f"{r['epoch']:5d}  {r['step']:10d}  {at:10.0f}  {r['modes']:5d}  {r['kl']:10.3f}")
print(f"training took {end - start - evaluation:.0f} s ({evaluation:.0f} s more for the evaluations above)")
TABLE
$PY -m utils.plot_metrics "$RUN" --output assets/demo_metrics.png
$PY test_ddgan.py --dataset stacked_digits --exp "$EXP" --epoch_id "$EPOCHS" --batch_size 100 --output_dir assets
# The grid 4x larger, and its R, G, B planes side by side (the three digits of each sample).
$PY - <<'PLANES'
from PIL import Image
grid = Image.open("assets/samples_stacked_digits.png").convert("RGB")
grid.resize((4 * grid.width, 4 * grid.height), Image.NEAREST).save("assets/samples_stacked_digits_x4.png")
planes = Image.new("L", (3 * grid.width + 20, grid.height), 255)
for index, plane in enumerate(grid.split()):
    planes.paste(plane, (index * (grid.width + 10), 0))
planes.resize((4 * planes.width, 4 * planes.height), Image.NEAREST).save("assets/samples_stacked_digits_channels.png")
PLANES
$PY test_ddgan.py --dataset stacked_digits --exp "$EXP" --epoch_id "$EPOCHS" --batch_size 1000 --mode_coverage
echo "demo took $(( $(date +%s) - start )) s; grid: assets/samples_stacked_digits.png (x4: _x4.png); R, G, B digits: _channels.png; curve: assets/demo_metrics.png"
