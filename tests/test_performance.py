"""Opt-in fast paths agree with the default fp32 path within stated tolerances."""

import torch

from score_sde.models.discriminator import Discriminator_small
from tests.conftest import randomize, rel_error, tiny_config, tiny_generator
from utils import performance
from utils.flags import namespace

BF16_TOL = 5e-2  # bf16 keeps 8 mantissa bits; measured 0.3 % (G) and 1.0 % (D) here
CHANNELS_LAST_TOL = 1e-5  # same math, other summation order
COMPILE_TOL = 1e-4  # inductor fuses and reorders fp32 arithmetic


def networks():
    generator = tiny_generator()
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


def test_fp16_r1_step_is_finite_and_equals_fp32():
    """Under --amp fp16 the R1 step's real pass runs D in fp32: R1's gradient (one per logit, times the
    GradScaler's 2**16) would overflow fp16.  Its penalty is then the fp32 path's, exactly."""
    from training.loss import DDGANLoss
    from utils import diffusion

    generator, disc = networks()
    args = namespace(tiny_config())
    coeff, pos = diffusion.Diffusion_Coefficients(args, "cpu"), diffusion.Posterior_Coefficients(args, "cpu")
    real = torch.randn(4, 3, 16, 16)
    penalties = []
    for amp in ("none", "fp16"):
        loss = DDGANLoss(generator, disc, coeff, pos, 4, 8, r1_gamma=0.05, amp=amp,
                         scaler=performance.grad_scaler(amp, "cpu"))
        torch.manual_seed(3)
        penalties.append(loss.accumulate_d_real(real, global_step=0)[1])
    assert torch.isfinite(penalties[1]) and torch.equal(penalties[1], penalties[0])


def test_compiled_discriminator_keeps_r1_exact():
    """With --compile the R1 step runs the eager D (double backward); gradients equal the eager run's."""
    from training.loss import DDGANLoss
    from utils import diffusion

    generator, disc = networks()
    args = namespace(tiny_config())
    coeff, pos = diffusion.Diffusion_Coefficients(args, "cpu"), diffusion.Posterior_Coefficients(args, "cpu")
    real = torch.randn(4, 3, 16, 16)
    grads = []
    for d in (disc, torch.compile(disc, backend="aot_eager")):
        loss = DDGANLoss(generator, d, coeff, pos, 4, 8, r1_gamma=0.05, lazy_reg=None)
        disc.zero_grad()
        torch.manual_seed(3)
        _, penalty, t, x_tp1 = loss.accumulate_d_real(real, global_step=0)
        loss.accumulate_d_fake(x_tp1, t)
        assert penalty is not None
        grads.append(torch.cat([p.grad.flatten() for p in disc.parameters()]))
    assert rel_error(grads[1], grads[0]) < 1e-5


def test_bench_quick_mode_records_rows(tmp_path):
    from benchmarks import bench

    results = tmp_path / "RESULTS.md"
    profiles = tmp_path / "profiles"
    rows = bench.main(["--config", "tiny", "--quick", "--device", "cpu", "--results", str(results),
                       "--profile", str(profiles)])
    assert [r["what"] for r in rows] == ["sample", "train_r1_step", "train_plain_step"]
    for row in rows:
        assert row["median_s"] > 0 and row["flops"] > 0 and row["img_per_s"] > 0
        shares = row["time_shares"]
        assert abs(sum(shares.values()) - 1) < 0.01 and max(shares, key=shares.get) == "convolution"
        name = f"tiny_{row['what']}_none"
        assert "convolution" in (profiles / f"{name}.txt").read_text()
        assert (profiles / f"{name}.trace.json").stat().st_size > 0
    table = results.read_text().splitlines()
    assert len([line for line in table if line.startswith("| 20")]) == 3
    assert "bench.py --config tiny --quick" in table[-1]


def test_r1_with_channels_last_inputs_equals_default():
    from training.loss import r1_penalty

    _, disc = networks()
    x, t, _ = inputs()
    penalties = []
    for channels_last in (False, True):
        performance.prepare_model(disc, channels_last)
        xi = performance.prepare_input(x.clone(), channels_last).requires_grad_(True)
        penalties.append(r1_penalty(disc(xi, t, xi).view(-1), xi))
    assert rel_error(penalties[1], penalties[0]) < CHANNELS_LAST_TOL


def test_compiled_sampler_agrees_with_eager():
    """--compile (inductor, here on the CPU) runs the same T-step chain as the eager sampler."""
    from utils.sampling import Sampler

    generator, _ = networks()
    config = tiny_config()
    x_init = torch.randn(4, 3, 16, 16)
    chains = []
    for compile in (False, True):
        sampler = Sampler(generator, config, "cpu", compile=compile)
        with torch.no_grad():
            torch.manual_seed(5)
            chains.append(sampler.chain(x_init))
    assert rel_error(chains[1], chains[0]) < COMPILE_TOL
