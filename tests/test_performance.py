"""Opt-in fast paths agree with the default fp32 path within stated tolerances."""

import argparse

import torch

from score_sde.models.discriminator import Discriminator_small
from score_sde.models.ncsnpp_generator_adagn import NCSNpp
from tests.conftest import rel_error
from tests.test_networks import TINY, randomize
from utils import performance

BF16_TOL = 5e-2  # bf16 keeps 8 mantissa bits; measured 0.4 % (G) and 2.3 % (D) here
CHANNELS_LAST_TOL = 1e-5  # same math, other summation order


def networks():
    torch.manual_seed(0)
    generator = NCSNpp(argparse.Namespace(**TINY)).eval()
    disc = Discriminator_small(nc=6, ngf=8, t_emb_dim=16)
    randomize(generator)
    return generator, disc


def inputs():
    torch.manual_seed(1)
    return torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3]), torch.randn(4, 8)


def test_bf16_autocast_agrees_with_fp32():
    generator, disc = networks()
    x, t, z = inputs()
    with torch.no_grad():
        ref_g, ref_d = generator(x, t, z), disc(x, t, x)
        with performance.autocast("bf16", "cpu"):
            fast_g, fast_d = generator(x, t, z), disc(x, t, x)
    assert fast_g.dtype == torch.bfloat16
    assert rel_error(fast_g.float(), ref_g) < BF16_TOL
    assert rel_error(fast_d.float(), ref_d) < BF16_TOL


def test_channels_last_agrees_with_default():
    generator, disc = networks()
    x, t, z = inputs()
    with torch.no_grad():
        ref_g, ref_d = generator(x, t, z), disc(x, t, x)
        performance.prepare_model(generator, True)
        performance.prepare_model(disc, True)
        xl = performance.prepare_input(x, True)
        fast_g, fast_d = generator(xl, t, z), disc(xl, t, xl)
    assert generator.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert rel_error(fast_g, ref_g) < CHANNELS_LAST_TOL
    assert rel_error(fast_d, ref_d) < CHANNELS_LAST_TOL


def test_default_path_is_a_no_op():
    generator, _ = networks()
    assert performance.maybe_compile(generator, False) is generator
    assert performance.eager(generator) is generator
    assert not performance.grad_scaler("bf16", "cpu").is_enabled()
    assert performance.grad_scaler("fp16", "cpu").is_enabled()
