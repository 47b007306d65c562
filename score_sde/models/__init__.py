"""The networks, built from a run's configuration (the dict every checkpoint carries).

``build_generator(config)`` and ``build_discriminator(config)`` are the one place where a run's
classes are chosen: a new generator or discriminator class is added here (and in its own module).
Built in this order right after seeding, they hold the reference's initial weights.
"""

import argparse

import torch.nn as nn

from score_sde.models.discriminator import discriminator_class
from score_sde.models.ncsnpp_generator_adagn import NCSNpp


def build_generator(config):
    """NCSNpp of ``config`` (the model flags: utils.flags.MODEL_KEYS)."""
    return NCSNpp(argparse.Namespace(**config))


def build_discriminator(config):
    """The discriminator for the image size (small up to 64 px, large above) on (x_t, x_{t+1}) pairs."""
    disc = discriminator_class(config["image_size"])
    return disc(nc=2 * config["num_channels"], ngf=config["ngf"], t_emb_dim=config["t_emb_dim"],
                act=nn.LeakyReLU(0.2))
