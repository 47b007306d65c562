"""Helpers for the evaluation tests: tiny generator checkpoints and running test_ddgan.py."""

import argparse
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from score_sde import legacy
from score_sde.models.ncsnpp_generator_adagn import NCSNpp
from tests.conftest import REPO
from utils import checkpoint
from utils.flags import add_common_flags, add_model_flags, check_model_flags, model_config, namespace

# A generator small enough to sample in a fraction of a second on the CPU.
TINY_FLAGS = ["--image_size", "16", "--num_channels_dae", "8", "--ch_mult", "1", "2", "--num_res_blocks", "1",
              "--attn_resolutions", "8", "--nz", "4", "--z_emb_dim", "8", "--n_mlp", "1",
              "--num_timesteps", "2"]


def tiny_config(flags=TINY_FLAGS):
    parser = argparse.ArgumentParser()
    add_common_flags(parser)
    add_model_flags(parser)
    return model_config(check_model_flags(parser.parse_args(flags)))


def tiny_generator(config, seed=0):
    torch.manual_seed(seed)
    return NCSNpp(namespace(config)).eval()


def save_own(path, config, seed=0):
    """Our format: reference-layout weights + config."""
    checkpoint.save_generator(path, tiny_generator(config, seed), config)
    return path


def save_plain(path, config, seed=0, ddp=False):
    """The reference's format: a bare state dict in its layout, optionally ``module.``-prefixed."""
    state = legacy.reference_state_dict(tiny_generator(config, seed))
    torch.save({("module." + k if ddp else k): v for k, v in state.items()}, path)
    return path


def config_flags(config):
    """Command-line flags that describe ``config`` (the inverse of the model flag parser)."""
    flags = []
    for key, value in config.items():
        if key == "not_use_tanh":
            flags += ["--not_use_tanh"] if value else []
        elif isinstance(value, bool):
            flags.append(f"--{key}" if value else f"--no-{key}")
        elif isinstance(value, (list, tuple)):
            flags += [f"--{key}", *map(str, value)]
        else:
            flags += [f"--{key}", str(value)]
    return flags


def run_cli(*args, env=None, cwd=None):
    """Run test_ddgan.py in a subprocess; returns the CompletedProcess (text output)."""
    full_env = {**os.environ, "DDGAN_NO_DOWNLOAD": "1", **(env or {})}
    return subprocess.run([sys.executable, str(REPO / "test_ddgan.py"), *map(str, args)], cwd=cwd or REPO,
                          env=full_env, capture_output=True, text=True, timeout=120)


def read_pngs(folder, count):
    """uint8 (count, H, W, C) from {0..count-1}.png."""
    return np.stack([np.asarray(Image.open(os.path.join(folder, f"{i}.png"))) for i in range(count)])


def write_images(folder, count, size=16, seed=0):
    """``count`` random RGB PNGs in ``folder`` (a stand-in for real images)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i}.png"))
    return folder
