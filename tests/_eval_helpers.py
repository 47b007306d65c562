"""Helpers for the evaluation tests: tiny generator checkpoints in both formats, stand-ins for the
Inception network and the digit classifier."""

import torch

from score_sde import checkpoint, legacy
from tests.conftest import tiny_generator


def save_own(path, config, seed=0):
    """Our format: reference-layout weights + config."""
    checkpoint.save_generator(path, tiny_generator(config, seed), config)
    return path


def save_plain(path, config, seed=0, ddp=False):
    """The reference's format: a bare state dict in its layout, optionally ``module.``-prefixed."""
    state = legacy.reference_state_dict(tiny_generator(config, seed))
    torch.save({("module." + k if ddp else k): v for k, v in state.items()}, path)
    return path


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


def build_fake_inception(monkeypatch, make):
    """metrics.inception builds ``make(**kwargs)`` instead of the FID network, with a fresh per-process cache."""
    from metrics import inception

    class Builder:
        BLOCK_INDEX_BY_DIM = inception.InceptionV3.BLOCK_INDEX_BY_DIM

        def __new__(cls, *args, **kwargs):
            return make(**kwargs)

    monkeypatch.setattr(inception, "InceptionV3", Builder)
    monkeypatch.setattr(inception, "_NETWORKS", {})


def constant_digit_classifier(path, digit=7):
    """A digits classifier file (metrics.mode_coverage's format) that reads every channel as ``digit``."""
    from metrics.classifiers import digit_cnn, save_classifier

    model = digit_cnn(8)
    torch.nn.init.zeros_(model[-1].weight)
    with torch.no_grad():
        model[-1].bias.copy_(torch.nn.functional.one_hot(torch.tensor(digit), 10).float())
    save_classifier(str(path), model, 8, 0.5)
    return path


def random_digit_classifier(path):
    """A digits classifier file (metrics.mode_coverage's format) with seeded random weights: made in no
    time, it reads varied digits (meaningless ones)."""
    from metrics.classifiers import DIGITS_SIDE, digit_cnn, save_classifier

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = digit_cnn(DIGITS_SIDE)
    save_classifier(str(path), model, DIGITS_SIDE, None)
    return path
