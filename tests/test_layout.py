"""The released checkpoints' key layouts and parameter counts (shared/reference/official_checkpoint_layout.json,
copied to tests/fixtures)."""

import argparse

import pytest
import torch

from score_sde import checkpoint, legacy
from score_sde.models.discriminator import Discriminator_large, Discriminator_small
from score_sde.models.ncsnpp_generator_adagn import NCSNpp
from tests.fixtures.compact import load_layout

PARAMETER_COUNTS = {"cifar10": 48_432_515, "celeba_256": 39_726_979, "lsun": 39_726_979,
                    "discriminator_small": 12_741_633, "discriminator_large": 27_737_217}


@pytest.fixture(scope="module")
def layout():
    return load_layout()


def shapes(state_dict):
    return {key: list(value.shape) for key, value in state_dict.items()}


@pytest.mark.parametrize("name", ["cifar10", "celeba_256", "lsun"])
def test_generator_layout_and_released_checkpoint(layout, name, tmp_path):
    entry = layout[name]
    generator = NCSNpp(argparse.Namespace(**entry["generator_args"]))
    count = sum(p.numel() for p in generator.parameters())
    assert count == entry["generator_num_parameters"] == PARAMETER_COUNTS[name]
    assert shapes(legacy.reference_state_dict(generator)) == entry["generator_state_dict"]
    # A released file: the reference's keys, each prefixed with DDP's "module.".
    released = {f"module.{key}": torch.full(shape, 0.5) for key, shape in entry["generator_state_dict"].items()}
    path = tmp_path / "netG_released.pth"
    torch.save(released, path)
    loaded, config = checkpoint.load_generator(path, "cpu", argparse.Namespace(**entry["generator_args"]))
    assert config["ch_mult"] == entry["generator_args"]["ch_mult"]
    assert all(torch.all(p == 0.5) for p in loaded.parameters() if p.requires_grad)


@pytest.mark.parametrize("name,cls", [("discriminator_small", Discriminator_small),
                                      ("discriminator_large", Discriminator_large)])
def test_discriminator_layout(layout, name, cls):
    entry = layout[name]
    disc = cls(**entry["args"])
    assert sum(p.numel() for p in disc.parameters()) == entry["num_parameters"] == PARAMETER_COUNTS[name]
    assert shapes(disc.state_dict()) == entry["state_dict"]
    disc.load_state_dict({f"module.{k}": torch.zeros(s) for k, s in entry["state_dict"].items()})
