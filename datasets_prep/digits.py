"""``stacked_digits``: an offline StackedMNIST built from scikit-learn's bundled 8x8 digits.

scikit-learn's ``load_digits`` (1,797 images, 8x8, values 0..16) needs no download.  Each
class is split in two with a fixed permutation: the *generator* half feeds the data set,
the *held-out* half trains the mode classifier (metrics.classifiers), so the
classifier never sees the images the GAN was trained on.  An item stacks three digits
drawn independently (with a fixed seed) from the generator half as R, G, B, upsampled
bilinearly to ``size``: 1,000 modes, label 100 d_R + 10 d_G + d_B.
"""

import functools

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.data

from datasets_prep.stackmnist import stacked_label
from utils.argtypes import positive_int

DIGITS_SIDE = 8
DIGITS_MAX = 16.0
SPLIT_SEED = 0
PARTS = ("generator", "heldout")
DEFAULT_LENGTH = 60_000


@functools.lru_cache(maxsize=1)
def _split_indices():
    """{part: sorted indices into load_digits()}: each class halved by a fixed permutation."""
    from sklearn.datasets import load_digits

    labels = load_digits().target
    rng = np.random.default_rng(SPLIT_SEED)
    halves = {part: [] for part in PARTS}
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        halves["generator"].append(members[: (len(members) + 1) // 2])
        halves["heldout"].append(members[(len(members) + 1) // 2:])
    return {part: np.sort(np.concatenate(chunks)) for part, chunks in halves.items()}


def digits_split(part):
    """(float32 images (n, 8, 8) in [0, 1], int64 labels (n,)) of the "generator" or "heldout" half."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    index = _split_indices()[part]
    images = torch.from_numpy(digits.images[index].astype(np.float32) / DIGITS_MAX)
    return images, torch.from_numpy(digits.target[index].astype(np.int64))


def upsample(digits, size):
    """(N, C, 8, 8) in [0, 1] -> (N, C, size, size) in [-1, 1], bilinear."""
    if size != digits.shape[-1]:
        digits = F.interpolate(digits, size=(size, size), mode="bilinear", align_corners=False)
    return digits * 2 - 1


class StackedDigits(torch.utils.data.Dataset):
    """Items: (float tensor (3, size, size) in [-1, 1], mode id in [0, 1000)); flipped left-right at
    random (torch's global RNG) only with ``flip``, which the registry never asks for.

    ``train`` selects the generator half (True) or the held-out half (False).
    """

    def __init__(self, size=32, length=DEFAULT_LENGTH, train=True, seed=0, flip=False):
        self.size, self.flip = size, flip
        self.images, self.labels = digits_split(PARTS[0] if train else PARTS[1])
        rng = np.random.default_rng(seed)
        self.triplets = torch.from_numpy(rng.integers(0, len(self.images), (length, 3)))

    def __len__(self):
        return len(self.triplets)

    def __getitem__(self, index):
        triplet = self.triplets[index]
        image = upsample(self.images[triplet][None], self.size)[0]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, stacked_label(self.labels[triplet])


def add_flags(group):
    """The registry's flags for stacked_digits: --stacked_digits_length."""
    group.add_argument("--stacked_digits_length", type=positive_int, default=DEFAULT_LENGTH,
                       help="stacked_digits: number of (fixed, seeded) digit triplets in the data set")


def build(args, root, train, flip):
    """The registry's loader (``root`` is unused: the digits ship with scikit-learn)."""
    length = getattr(args, "stacked_digits_length", DEFAULT_LENGTH)
    return StackedDigits(args.image_size, length, train=train, flip=flip)
