"""Every generator option builds, runs and trains; FIR resampling equals a direct upfirdn2d."""

import numpy as np
import pytest
import torch

from score_sde import legacy
from score_sde.models import up_or_down_sampling as updown
from score_sde.models.discriminator import Discriminator_large, Discriminator_small
from tests.conftest import randomize, run_command, tiny_config, tiny_generator

OPTIONS = [
    {},
    {"resblock_type": "ddpm"},
    {"resblock_type": "ddpm", "fir": False},
    {"resblock_type": "ddpm", "resamp_with_conv": False},
    {"resblock_type": "ddpm", "fir": False, "resamp_with_conv": False},
    {"resblock_type": "biggan_oneadagn"},
    {"progressive": "residual"},
    {"progressive": "residual", "fir": False},
    {"progressive": "output_skip"},
    {"progressive": "output_skip", "fir": False},
    {"progressive_input": "none"},
    {"progressive_input": "input_skip"},
    {"progressive_input": "input_skip", "progressive_combine": "cat"},
    {"progressive_input": "residual", "fir": False},
    {"embedding_type": "fourier"},
    {"conditional": False},
    {"centered": False, "not_use_tanh": True},
    {"skip_rescale": False, "dropout": 0.1},
    {"attn_resolutions": [16, 8], "num_res_blocks": 2},
    {"fir_kernel": [1, 1]},
    {"resblock_type": "ddpm", "progressive": "residual", "progressive_input": "input_skip",
     "progressive_combine": "cat", "embedding_type": "fourier", "ch_mult": [1, 2, 2]},
]


def make_generator(**overrides):
    """The tiny generator with ``overrides`` of its configuration."""
    return tiny_generator(tiny_config(**overrides))


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_generator_option_runs_and_trains(options):
    generator = make_generator(**options)
    randomize(generator)
    generator.train()
    x, t, z = torch.randn(2, 3, 16, 16), torch.tensor([0, 3]), torch.randn(2, 8)
    out = generator(x, t, z)
    assert out.shape == x.shape and torch.isfinite(out).all()
    if not options.get("not_use_tanh"):
        assert out.abs().max() <= 1
    out.square().mean().backward()
    # Without time conditioning the blocks keep their (unused) time projections, as in the reference.
    unused = "Dense_0" if options.get("conditional") is False else None
    for name, p in generator.named_parameters():
        if p.requires_grad and not (unused and unused in name):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, f"{name} gets no gradient"


@pytest.mark.parametrize("options", OPTIONS[:8], ids=str)
def test_reference_key_conversion_round_trip(options):
    generator = make_generator(**options)
    names = generator.reference_names()
    for name in names:
        generator.get_submodule(name)
    ours = generator.state_dict()
    theirs = legacy.reference_state_dict(generator)
    assert len(theirs) == len(ours)
    indices = {int(k.split(".")[1]) for k in theirs if k.startswith("all_modules.")}
    with_weights = {i for i, name in enumerate(names) if list(generator.get_submodule(name).parameters())}
    assert indices == with_weights
    assert legacy.from_reference(theirs, names).keys() == ours.keys()
    clone = make_generator(**options)
    randomize(clone)
    clone.load_state_dict({"module." + k: v for k, v in theirs.items()})
    assert all(torch.equal(a, b) for a, b in zip(clone.state_dict().values(), ours.values(), strict=True))


def test_fourier_embedding_finite_at_step_zero():
    generator = make_generator(embedding_type="fourier")
    temb = generator.time_embedding(torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(temb).all()


def test_discriminators_run_and_accept_ddp_keys():
    for cls, size in ((Discriminator_small, 32), (Discriminator_large, 256)):
        disc = cls(nc=6, ngf=4, t_emb_dim=16)
        x = torch.randn(4, 3, size, size)
        out = disc(x, torch.tensor([0, 1, 2, 3]), x)
        assert out.shape == (4, 1)
        twin = cls(nc=6, ngf=4, t_emb_dim=16)
        twin.load_state_dict({"module." + k: v for k, v in disc.state_dict().items()})
        assert torch.equal(twin(x, torch.tensor([0, 1, 2, 3]), x), out)


def test_strict_loading_rejects_foreign_keys():
    generator = make_generator()
    state = legacy.reference_state_dict(generator)
    state["all_modules.0.extra"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        generator.load_state_dict(state)


# ----------------------------------------------------------------------------- FIR

def direct_upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """Literal definition: zero-insert, pad (negative crops), true 2-D convolution, subsample."""
    x, kernel = x.numpy().astype(np.float64), np.asarray(kernel, dtype=np.float64)
    b, c, h, w = x.shape
    z = np.zeros((b, c, h * up, w * up))
    z[:, :, ::up, ::up] = x
    p0, p1 = pad
    z = np.pad(z, ((0, 0), (0, 0), (max(p0, 0), max(p1, 0)), (max(p0, 0), max(p1, 0))))
    z = z[:, :, max(-p0, 0): z.shape[2] - max(-p1, 0), max(-p0, 0): z.shape[3] - max(-p1, 0)]
    kh, kw = kernel.shape
    out = np.zeros((b, c, z.shape[2] - kh + 1, z.shape[3] - kw + 1))
    for a in range(kh):
        for d in range(kw):
            out += kernel[kh - 1 - a, kw - 1 - d] * z[:, :, a: a + out.shape[2], d: d + out.shape[3]]
    return torch.from_numpy(out[:, :, ::down, ::down])


def direct_correlate(x, w):
    """Valid cross-correlation (what F.conv2d computes), in float64 loops."""
    x, w = x.numpy().astype(np.float64), w.numpy().astype(np.float64)
    kh, kw = w.shape[2:]
    out = np.zeros((x.shape[0], w.shape[0], x.shape[2] - kh + 1, x.shape[3] - kw + 1))
    for a in range(kh):
        for d in range(kw):
            patch = x[:, :, a: a + out.shape[2], d: d + out.shape[3]]
            out += np.einsum("bihw,oi->bohw", patch, w[:, :, a, d])
    return torch.from_numpy(out)


KERNELS = [[1, 3, 3, 1], [1, 1], [1, 2, 1], [1, 4, 6, 4, 1]]


@pytest.mark.parametrize("taps", KERNELS)
def test_fir_upsample_downsample_match_direct_upfirdn2d(taps):
    x = torch.randn(2, 3, 8, 8)
    kernel = updown.setup_kernel(taps)
    p = kernel.shape[0] - 2
    expected_up = direct_upfirdn2d(x, kernel * 4, up=2, pad=((p + 1) // 2 + 1, p // 2))
    expected_down = direct_upfirdn2d(x, kernel, down=2, pad=((p + 1) // 2, p // 2))
    torch.testing.assert_close(updown.upsample_2d(x, taps).double(), expected_up, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(updown.downsample_2d(x, taps).double(), expected_down, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("taps", KERNELS[:2])
def test_fir_conv_layers_match_direct_computation(taps):
    x, w = torch.randn(2, 3, 8, 8), torch.randn(5, 3, 3, 3)
    kernel = updown.setup_kernel(taps)
    # Upsampling conv: zero-insert, 3x3 correlation with w over a 2-pixel border, then the FIR.
    p = (kernel.shape[0] - 2) - 2
    stuffed = direct_upfirdn2d(x, np.ones((1, 1)), up=2, pad=(2, 1)).float()
    expected = direct_upfirdn2d(direct_correlate(stuffed, w).float(), kernel * 4, pad=((p + 1) // 2 + 1, p // 2 + 1))
    torch.testing.assert_close(updown.upsample_conv_2d(x, w, taps).double(), expected, atol=1e-4, rtol=1e-4)
    # Downsampling conv: FIR over a (p+1)//2, p//2 border, then stride-2 3x3 correlation.
    p = (kernel.shape[0] - 2) + 2
    filtered = direct_upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2)).float()
    expected = direct_correlate(filtered, w)[:, :, ::2, ::2]
    torch.testing.assert_close(updown.conv_downsample_2d(x, w, taps).double(), expected, atol=1e-4, rtol=1e-4)


def test_fir_conv_with_identity_weights_is_plain_fir():
    x = torch.randn(1, 2, 8, 8)
    delta = torch.zeros(2, 2, 3, 3)
    delta[0, 0, 1, 1] = delta[1, 1, 1, 1] = 1
    torch.testing.assert_close(updown.upsample_conv_2d(x, delta), updown.upsample_2d(x))
    torch.testing.assert_close(updown.conv_downsample_2d(x, delta), updown.downsample_2d(x))


def test_naive_resampling():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    up = updown.naive_upsample_2d(x)
    assert up.shape == (1, 1, 8, 8) and torch.equal(up[0, 0, :2, :2], torch.zeros(2, 2))
    assert torch.equal(updown.naive_downsample_2d(up), x)


def test_no_compiled_extensions_imported():
    code = ("import sys, score_sde.models.ncsnpp_generator_adagn, score_sde.models.discriminator;"
            "print(any(name.startswith('torch.utils.cpp_ext') for name in sys.modules))")
    result = run_command("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
