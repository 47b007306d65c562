#!/usr/bin/env bash
# Install what is needed (./.venv), train DDGAN on the bundled stacked digits (scikit-learn's
# 8x8 digits as RGB triplets, 1000 modes) on the CPU, then sample a grid and score mode coverage.
# EPOCHS (default 40, about 50 iterations each) sets the length; EXP the run name.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
PY=.venv/bin/python
EXP=${EXP:-demo_stacked_digits}
EPOCHS=${EPOCHS:-40}
MODEL=(--dataset stacked_digits --exp "$EXP" --image_size 8 --num_channels_dae 32 --ch_mult 1 2
       --num_res_blocks 1 --attn_resolutions --nz 16 --z_emb_dim 64 --t_emb_dim 64 --n_mlp 2 --ngf 16
       --num_timesteps 4)
rm -rf "saved_info/dd_gan/stacked_digits/$EXP"  # a fresh run each time
start=$(date +%s)
$PY train_ddgan.py "${MODEL[@]}" --batch_size 64 --stacked_digits_length 3200 --num_epoch "$EPOCHS" \
    --lr_g 2e-4 --lr_d 1.25e-4 --r1_gamma 0.02 --lazy_reg 15 --use_ema --ema_decay 0.99 \
    --save_ckpt_every "$EPOCHS" --num_workers 0 --no-tensorboard
echo "training took $(( $(date +%s) - start )) s"
$PY test_ddgan.py --dataset stacked_digits --exp "$EXP" --epoch_id "$EPOCHS" --batch_size 100 --output_dir assets
$PY -c "from PIL import Image; im = Image.open('assets/samples_stacked_digits.png'); \
im.resize((4 * im.width, 4 * im.height), Image.NEAREST).save('assets/samples_stacked_digits_x4.png')"
$PY test_ddgan.py --dataset stacked_digits --exp "$EXP" --epoch_id "$EPOCHS" --batch_size 1000 --mode_coverage
echo "demo took $(( $(date +%s) - start )) s; grid: assets/samples_stacked_digits.png (x4: _x4.png)"
