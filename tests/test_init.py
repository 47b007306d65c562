"""A run from scratch starts where the reference starts (shared/reference/ddgan_init.pt).

``torch.manual_seed(seed)``, then ``NCSNpp(config)``, then ``Discriminator_{kind}(...)`` must
give the reference's tensors exactly, and leave the CPU RNG where the reference left it.  Exactly:
through the SHA-256 of each tensor's bytes (tests/fixtures/init_digests.json), not the tensors.
"""

import argparse

import pytest
import torch
import torch.nn as nn

import datasets_prep
from score_sde import legacy
from score_sde.checkpoint import unwrap
from score_sde.models.discriminator import SMALL_MAX_SIZE, Discriminator_large, Discriminator_small
from score_sde.models.ncsnpp_generator_adagn import NCSNpp
from tests.conftest import tiny_args
from tests.fixtures.compact import load_init_cases, tensor_digest
from training.trainer import Trainer
from utils.distributed import Context
from utils.rng import seed_everything

DISCRIMINATORS = {"small": Discriminator_small, "large": Discriminator_large}


def assert_same_tensors(ours, theirs):
    """``ours`` (tensors) bit-equal to ``theirs`` (their tensor_digests)."""
    assert ours.keys() == theirs.keys()
    different = [key for key in theirs if tensor_digest(ours[key]) != theirs[key]]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"


@pytest.mark.parametrize("index", [0, 1])
def test_seeded_initialisation_equals_the_reference(index):
    case = load_init_cases()[index]
    torch.manual_seed(case["seed"])
    generator = NCSNpp(argparse.Namespace(**case["config"]))
    disc = DISCRIMINATORS[case["d_kind"]](**case["d_args"], act=nn.LeakyReLU(0.2))
    assert tensor_digest(torch.get_rng_state()) == case["rng_after"]
    assert_same_tensors(legacy.reference_state_dict(generator), case["G"])
    assert_same_tensors(disc.state_dict(), case["D"])


def training_flags(case):
    """train_ddgan.py flags that describe a fixture case."""
    config = case["config"]
    flags = ["--seed", case["seed"], "--ngf", case["d_args"]["ngf"]]
    for key in ("image_size", "num_channels_dae", "n_mlp", "num_res_blocks", "nz", "z_emb_dim", "t_emb_dim",
                "num_timesteps", "dropout"):
        flags += [f"--{key}", config[key]]
    flags += ["--ch_mult", *config["ch_mult"], "--attn_resolutions", *config["attn_resolutions"]]
    return flags


def test_train_ddgan_builds_the_reference_initialisation():
    """The training script's own path (seed + rank, data set, then G and D), for the cases whose
    discriminator is the one the script picks for their image size."""
    usable = [case for case in load_init_cases() if case["d_kind"] == "small"
              and case["config"]["image_size"] <= SMALL_MAX_SIZE]
    assert usable
    for case in usable:
        args = tiny_args(*training_flags(case), "--batch_size", 4)
        seed_everything(args.seed)
        trainer = Trainer(Context(), args, datasets_prep.get_dataset(args))
        assert_same_tensors(legacy.reference_state_dict(trainer.generator), case["G"])
        assert_same_tensors(unwrap(trainer.netD).state_dict(), case["D"])
