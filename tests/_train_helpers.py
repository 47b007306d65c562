"""Shared pieces of the training tests: a tiny configuration and the CLI runner."""

import os
import subprocess
import sys
from pathlib import Path

import train_ddgan

REPO = Path(__file__).resolve().parents[1]

# A generator of ~60k parameters on 16 px stacked digits (no files needed).
TINY = ["--dataset", "stacked_digits", "--stacked_digits_length", "64", "--image_size", "16",
        "--num_channels_dae", "8", "--ch_mult", "1", "2", "--num_res_blocks", "1", "--n_mlp", "1",
        "--ngf", "4", "--nz", "8", "--z_emb_dim", "16", "--t_emb_dim", "16", "--batch_size", "4",
        "--num_workers", "0", "--no-tensorboard", "--device", "cpu", "--seed", "7"]


def tiny_args(*extra):
    """Parsed and checked flags of the tiny configuration plus ``extra``."""
    return train_ddgan.parse_args([*TINY, *map(str, extra)])


def run_cli(*argv, cwd, timeout=180):
    """Run train_ddgan.py in a subprocess in ``cwd`` (so that a default ./saved_info lands in a
    test folder); returns the CompletedProcess (text output)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "train_ddgan.py"), *map(str, argv)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def start_cli(*argv, cwd):
    """Start train_ddgan.py in the background, in a process group of its own (for signal tests)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(REPO / "train_ddgan.py"), *map(str, argv)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
