"""train_ddgan.py's command line: the reference's flags and defaults, its README commands and
the dry run (bad inputs: tests/test_bad_inputs.py)."""

import os
import shlex

import pytest
import torch

import datasets_prep
import train_ddgan
from tests import _data_formats as formats
from tests.conftest import run_command
from training import preflight
from training.trainer import Trainer
from utils.distributed import Context

REFERENCE_TRAINING_DEFAULTS = {
    "resume": False, "batch_size": 128, "num_epoch": 1200, "ngf": 64, "lr_g": 1.5e-4, "lr_d": 1e-4,
    "beta1": 0.5, "beta2": 0.9, "no_lr_decay": False, "use_ema": False, "ema_decay": 0.9999, "r1_gamma": 0.05,
    "lazy_reg": None, "save_content": False, "save_content_every": 50, "save_ckpt_every": 25,
    "num_proc_node": 1, "num_process_per_node": 1, "node_rank": 0, "local_rank": 0,
    "master_address": "127.0.0.1", "master_port": 6020, "seed": 1024, "exp": "experiment_cifar_default",
    "dataset": "cifar10",
}

README = {
    "cifar10": """--dataset cifar10 --exp ddgan_cifar10_exp1 --num_channels 3 --num_channels_dae 128
        --num_timesteps 4 --num_res_blocks 2 --batch_size 64 --num_epoch 1800 --ngf 64 --nz 100
        --z_emb_dim 256 --n_mlp 4 --embedding_type positional --use_ema --ema_decay 0.9999 --r1_gamma 0.02
        --lr_d 1.25e-4 --lr_g 1.6e-4 --lazy_reg 15 --num_process_per_node 4 --ch_mult 1 2 2 2
        --save_content""",
    "lsun": """--dataset lsun --image_size 256 --exp ddgan_lsun_exp1 --num_channels 3 --num_channels_dae 64
        --ch_mult 1 1 2 2 4 4 --num_timesteps 4 --num_res_blocks 2 --batch_size 8 --num_epoch 500 --ngf 64
        --embedding_type positional --use_ema --ema_decay 0.999 --r1_gamma 1. --z_emb_dim 256 --lr_d 1e-4
        --lr_g 1.6e-4 --lazy_reg 10 --num_process_per_node 8 --save_content""",
    "celeba_256": """--dataset celeba_256 --image_size 256 --exp ddgan_celebahq_exp1 --num_channels 3
        --num_channels_dae 64 --ch_mult 1 1 2 2 4 4 --num_timesteps 2 --num_res_blocks 2 --batch_size 4
        --num_epoch 800 --ngf 64 --embedding_type positional --use_ema --r1_gamma 2. --z_emb_dim 256
        --lr_d 1e-4 --lr_g 2e-4 --lazy_reg 10  --num_process_per_node 8 --save_content""",
}


def test_training_flags_keep_the_reference_defaults():
    args = train_ddgan.parse_args([])
    assert {key: getattr(args, key) for key in REFERENCE_TRAINING_DEFAULTS} == REFERENCE_TRAINING_DEFAULTS
    assert args.ch_mult == [1, 2, 2, 2]


def _write_readme_data(dataset, root):
    """Enough images in the data set's own format for one batch on each of the command's processes.
    Returns the extra flags: none for CIFAR-10 (the reference's ./data), --datadir for the LMDBs."""
    if dataset == "cifar10":
        formats.write_cifar10(str(root / "data"), per_batch=52)
        return []
    if dataset == "lsun":
        formats.write_lsun_lmdb(str(root / "church_outdoor_train_lmdb"), formats.random_images(64, 24, 32))
    else:
        formats.write_nvae_lmdb(str(root / "celeba" / "train.lmdb"), formats.random_images(32, 32, 32))
        root = root / "celeba"
    return ["--datadir", str(root if dataset == "celeba_256" else root)]


@pytest.mark.parametrize("dataset", README)
def test_readme_commands_parse_build_and_load_a_batch(dataset, tmp_path, monkeypatch):
    """The README's command lines, unchanged (the LMDB ones plus --datadir, which the reference
    hard-coded): flags, the checks, both networks and a first batch.  A full-size iteration on
    the CPU takes ~1 s for CIFAR-10 at batch 4 but ~100 s at 256 px, so none is run here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = shlex.split(README[dataset]) + _write_readme_data(dataset, tmp_path) + ["--num_workers", "0"]
    args = train_ddgan.parse_args(argv)
    assert args.use_ema and args.save_content and args.lazy_reg in (10, 15) and args.dataset == dataset
    preflight.prepare_run(args).release()
    trainer = Trainer(Context(), args, datasets_prep.get_dataset(args))
    real, _ = next(iter(trainer.loader))
    assert real.shape == (args.batch_size, 3, args.image_size, args.image_size)
    assert real.min() >= -1 and real.max() <= 1
    expected = {"cifar10": (48.43, 12.74), "lsun": (39.73, 27.74), "celeba_256": (39.73, 27.74)}[dataset]
    counts = [sum(p.numel() for p in net.parameters()) / 1e6 for net in (trainer.netG, trainer.netD)]
    assert counts == pytest.approx(expected, abs=0.01)


def test_dry_run_trains_one_iteration_and_writes_nothing(tmp_path, tiny_train):
    result = run_command("train_ddgan.py", *tiny_train, "--dry_run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "dry run: one iteration at batch 4" in result.stdout
    assert os.listdir(tmp_path) == []
