"""StackedMNIST: three MNIST digits as the R, G and B channels, 1,000 modes.

MNIST is read from torchvision's folder layout, ``ROOT/MNIST/raw/`` holding the idx files
``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (``t10k-*`` for the test split),
plain or ``.gz``.  As in the reference, the data set is twice as long as MNIST: each
channel walks two random permutations of MNIST back to back.  The permutations are drawn
once with a fixed generator (``pairing_seed``), so every run and every worker sees the
same triplets.
"""

import gzip
import os

import numpy as np
import torch.utils.data
from PIL import Image

from datasets_prep.common import image_transform, torchvision_download
from datasets_prep.errors import DataError

MNIST_RAW = os.path.join("MNIST", "raw")
_IDX_DTYPES = {0x08: np.uint8}


def idx_path(root, train, kind):
    """The idx file for ``kind`` ("images" / "labels"), preferring the uncompressed one."""
    dims = 3 if kind == "images" else 1
    base = os.path.join(root, MNIST_RAW, f"{'train' if train else 't10k'}-{kind}-idx{dims}-ubyte")
    return base if os.path.isfile(base) or not os.path.isfile(base + ".gz") else base + ".gz"


def mnist_present(root, train=True):
    """True if the split's idx files are on disk."""
    return all(os.path.isfile(idx_path(root, train, kind)) for kind in ("images", "labels"))


def download_mnist(root):
    """Download MNIST into ``root/MNIST/raw`` with torchvision; DataError if that fails."""
    torchvision_download("MNIST", root, f"MNIST is not in {os.path.join(root, MNIST_RAW)}",
                         "put train-images-idx3-ubyte and train-labels-idx1-ubyte (or .gz) there")


def read_idx(path):
    """An idx file (uint8 payload, optionally gzipped) as a numpy array."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as handle:
            data = handle.read()
        zero, dtype, ndim = data[0:2], data[2], data[3]
        if zero != b"\0\0" or dtype not in _IDX_DTYPES or ndim == 0:
            raise ValueError("bad header")
        shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        return np.frombuffer(data, dtype=_IDX_DTYPES[dtype], offset=4 + 4 * ndim).reshape(shape)
    except FileNotFoundError:
        raise DataError(f"{path} is missing: put MNIST's idx files in {os.path.dirname(path)}") from None
    except (OSError, EOFError, ValueError, IndexError) as error:
        raise DataError(f"{path} is not a readable MNIST idx file ({error}): download it again") from None


def read_mnist(root, train=True):
    """(uint8 images (N, 28, 28), int64 labels (N,)) of a split."""
    images = read_idx(idx_path(root, train, "images"))
    labels = read_idx(idx_path(root, train, "labels")).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"MNIST files in {os.path.join(root, MNIST_RAW)} do not match "
                        f"(images {images.shape}, labels {labels.shape}): download them again")
    return images, labels


def stack_triplets(n, rng, copies=2):
    """Index triplets (copies * n, 3): column c is ``copies`` random permutations of range(n)."""
    columns = [np.concatenate([rng.permutation(n) for _ in range(copies)]) for _ in range(3)]
    return np.stack(columns, axis=1)


def stacked_label(digits):
    """Mode id of a digit triplet (R, G, B): 100 d_R + 10 d_G + d_B."""
    return int(100 * digits[0] + 10 * digits[1] + digits[2])


class StackedMNIST(torch.utils.data.Dataset):
    """Items: (float tensor (3, size, size) in [-1, 1], mode id in [0, 1000)); flipped at random
    only with ``flip`` (the registry never asks: a flipped digit is not a digit)."""

    def __init__(self, root, size=32, train=True, pairing_seed=0, flip=False):
        self.images, self.labels = read_mnist(root, train)
        self.triplets = stack_triplets(len(self.images), np.random.default_rng(pairing_seed))
        self.transform = image_transform(size, flip=flip)

    def __len__(self):
        return len(self.triplets)

    def __getitem__(self, index):
        triplet = self.triplets[index]
        image = Image.fromarray(np.stack([self.images[i] for i in triplet], axis=-1))
        return self.transform(image), stacked_label(self.labels[triplet])


def build(args, root, train, flip):
    """The registry's loader."""
    return StackedMNIST(root, args.image_size, train=train, flip=flip)


def check(args, root):
    """The registry's check: the training idx files are there, else they are downloaded."""
    if not mnist_present(root):
        download_mnist(root)
