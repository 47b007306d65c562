"""Helpers for the evaluation tests: tiny generator checkpoints, running test_ddgan.py, stand-ins for
the Inception network and the digit classifier."""

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


class FakeInception(torch.nn.Module):
    """Stands in for InceptionV3 so the metric plumbing runs in a second: a seeded linear map of
    (B, 3, S, S) images to ``dims`` features and 1008 logits (``features_and_logits``); ``forward``
    gives the features as InceptionV3's one output block does.  ``scale`` = nan makes it diverge."""

    def __init__(self, image_size=16, dims=2048, scale=1.0, **ignored):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        inputs = 3 * image_size ** 2
        self.proj = torch.nn.Parameter(torch.randn(inputs, dims, generator=generator) * scale / inputs ** 0.5)
        self.fc = torch.nn.Parameter(torch.randn(dims, 1008, generator=generator) / dims ** 0.5)

    def forward(self, x):
        return [self.features_and_logits(x)[0][:, :, None, None]]

    def features_and_logits(self, x):
        features = x.flatten(1) @ self.proj
        return features, features @ self.fc


def constant_digit_classifier(path, digit=7):
    """A digits classifier file (metrics.mode_coverage's format) that reads every channel as ``digit``."""
    from metrics.mode_coverage import digit_cnn, save_classifier

    model = digit_cnn(8)
    torch.nn.init.zeros_(model[-1].weight)
    with torch.no_grad():
        model[-1].bias.copy_(torch.nn.functional.one_hot(torch.tensor(digit), 10).float())
    save_classifier(str(path), model, 8, 0.5)
    return path
