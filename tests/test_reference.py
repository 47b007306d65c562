"""Agreement with the numbers of the reference implementation (shared/reference, through its compact copy
in tests/fixtures)."""

import argparse

import pytest
import torch

from score_sde.models.discriminator import Discriminator_large, Discriminator_small
from score_sde.models.ncsnpp_generator_adagn import NCSNpp
from tests.conftest import SHARED, rel_error
from tests.fixtures import make_reference_fixture
from utils import diffusion

NETWORK_TOL = 1e-4
TABLE_TOL = 1e-5
SCHEDULE_KEYS = ("num_timesteps", "use_geometric", "beta_min", "beta_max")


def schedule_args(entry):
    return argparse.Namespace(**{key: entry[key] for key in SCHEDULE_KEYS})


@pytest.mark.parametrize("name", ["generator_32", "generator_256"])
def test_generator_output(reference, name):
    entry = reference[name]
    generator = NCSNpp(argparse.Namespace(**entry["config"]))
    generator.load_state_dict(entry["state_dict"])
    assert sum(p.numel() for p in generator.parameters()) == entry["num_parameters"]
    with torch.no_grad():
        out = generator.eval()(entry["x"], entry["t"], entry["z"])
    assert rel_error(out, entry["out"]) < NETWORK_TOL


@pytest.mark.parametrize("name,cls", [("discriminator_small", Discriminator_small),
                                      ("discriminator_large", Discriminator_large)])
def test_discriminator_output_and_r1(reference, name, cls):
    entry = reference[name]
    disc = cls(**entry["args"])
    disc.load_state_dict(entry["state_dict"])
    assert sum(p.numel() for p in disc.parameters()) == entry["num_parameters"]
    x = entry["x"].clone().requires_grad_(True)
    out = disc(x, entry["t"], entry["x_tp1"])
    assert rel_error(out, entry["out"]) < NETWORK_TOL
    (grad,) = torch.autograd.grad(out.sum(), x)
    r1 = grad.flatten(1).norm(2, dim=1).pow(2).mean()
    assert rel_error(r1, entry["r1_penalty"]) < NETWORK_TOL


def test_schedule_tables(reference):
    assert len(reference["schedules"]) >= 5
    for entry in reference["schedules"]:
        args = schedule_args(entry)
        forward = diffusion.Diffusion_Coefficients(args, "cpu")
        posterior = diffusion.Posterior_Coefficients(args, "cpu")
        time_schedule = diffusion.get_time_schedule(args, "cpu")
        assert time_schedule.dtype == torch.float64
        assert rel_error(time_schedule, entry["time_schedule"]) < TABLE_TOL
        for key in ("sigmas", "a_s", "a_s_cum", "sigmas_cum"):
            assert getattr(forward, key).dtype == torch.float32
            assert rel_error(getattr(forward, key), entry[key]) < TABLE_TOL, key
        for key in ("betas", "alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2"):
            assert rel_error(getattr(posterior, key), entry[key]) < TABLE_TOL, key


def test_posterior_samples(reference):
    for entry in reference["posterior"]:
        coeff = diffusion.Posterior_Coefficients(schedule_args(entry), "cpu")
        torch.manual_seed(entry["seed"])
        sample = diffusion.sample_posterior(coeff, entry["x0"], entry["x_t"], entry["t"])
        assert rel_error(sample, entry["sample"]) < TABLE_TOL


def test_q_sample_pairs(reference):
    for entry in reference["q_sample_pairs"]:
        coeff = diffusion.Diffusion_Coefficients(schedule_args(entry), "cpu")
        torch.manual_seed(entry["seed"])
        x_t, x_tp1 = diffusion.q_sample_pairs(coeff, entry["x0"], entry["t"])
        assert rel_error(x_t, entry["x_t"]) < TABLE_TOL
        assert rel_error(x_tp1, entry["x_tp1"]) < TABLE_TOL


def test_seeded_sampling(reference):
    entry = reference["sampling"]
    args = argparse.Namespace(**entry["config"])
    generator = NCSNpp(args)
    generator.load_state_dict(reference["generator_32"]["state_dict"])
    generator.eval()
    torch.manual_seed(entry["seed"])
    x_init = torch.randn(entry["batch"], args.num_channels, args.image_size, args.image_size)
    assert torch.equal(x_init, entry["x_init"])
    coeff = diffusion.Posterior_Coefficients(args, "cpu")
    out = diffusion.sample_from_model(coeff, generator, args.num_timesteps, x_init, args.num_timesteps, args)
    assert rel_error(out, entry["out"]) < NETWORK_TOL


@pytest.mark.skipif(not (SHARED / "reference").is_dir(), reason=f"no shared reference at {SHARED} (set DDGAN_SHARED)")
def test_compact_fixture_rebuilds_the_shared_reference():
    """The committed copy is not stale: it rebuilds shared/reference bit for bit (if not, rerun
    ``python -m tests.fixtures.make_reference_fixture --shared SHARED``)."""
    assert make_reference_fixture.stale(SHARED / "reference") == []
