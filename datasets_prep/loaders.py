"""``--dataset`` -> a torch Dataset, the data flags, and the up-front check of the data.

Every data set yields (float tensor (C, H, W) in [-1, 1], int label or 0).  ``train=True``
is the training split with the reference's augmentation (random left-right flips except
for the digit sets); ``train=False`` never flips and takes the test split where the data
set has one (CIFAR-10 test_batch, MNIST t10k, the held-out digits), else the same images.
"""

import argparse
import os

from datasets_prep.cifar import Cifar10, cifar_present, download_cifar10
from datasets_prep.common import DataError, load_image_file
from datasets_prep.digits import StackedDigits
from datasets_prep.folder import ImageFolder, find_images
from datasets_prep.lmdb_io import PARTIAL_SUFFIX, ImageLmdb, find_image_lmdb, is_lmdb
from datasets_prep.lsun import LSUN_SUBSET, LsunLmdb, find_lsun_lmdb, lsun_keys
from datasets_prep.stackmnist import StackedMNIST, download_mnist, mnist_present
from utils.argtypes import positive_int
from utils.flags import DATASETS

DEFAULT_ROOT = "./data"  # the reference's root for cifar10 and stackmnist
DEFAULT_DIGITS_LENGTH = 60_000


def dataset_names():
    """The values --dataset accepts."""
    return DATASETS


def add_data_flags(parser):
    """Data set options beyond --dataset/--datadir (utils.flags.add_common_flags)."""
    group = parser.add_argument_group("data")
    group.add_argument("--lsun_subset", action=argparse.BooleanOptionalAction, default=True,
                       help=f"LSUN: train on the first {LSUN_SUBSET:,} images only, as the reference does")
    group.add_argument("--stacked_digits_length", type=positive_int, default=DEFAULT_DIGITS_LENGTH,
                       help="stacked_digits: number of (fixed, seeded) digit triplets in the data set")
    return group


def _root(args):
    return args.datadir or DEFAULT_ROOT


def _lsun_limit(args):
    return LSUN_SUBSET if getattr(args, "lsun_subset", True) else None


def _check_cifar10(args):
    if not cifar_present(_root(args)):
        download_cifar10(_root(args))


def _check_stackmnist(args):
    if not mnist_present(_root(args)):
        download_mnist(_root(args))


def _check_lsun(args):
    lsun_keys(find_lsun_lmdb(args.datadir), limit=1)


def _check_lmdb(args):
    ImageLmdb(find_image_lmdb(args.datadir), args.image_size, flip=False)


def _folder_is_lmdb(datadir):
    """--dataset folder also takes a prepare_lmdb output (finished or not, for the right message)."""
    return bool(datadir) and (is_lmdb(datadir) or os.path.isdir(datadir + PARTIAL_SUFFIX))


def _check_folder(args):
    if _folder_is_lmdb(args.datadir):
        _check_lmdb(args)
    else:
        load_image_file(os.path.join(args.datadir, find_images(args.datadir)[0]))


_CHECKS = {
    "cifar10": _check_cifar10,
    "stackmnist": _check_stackmnist,
    "lsun": _check_lsun,
    "celeba_256": _check_lmdb,
    "ffhq_256": _check_lmdb,
    "folder": _check_folder,
    "stacked_digits": lambda args: None,
}


def check_data(args):
    """Check that ``args.dataset`` can be read from ``args.datadir`` before any work starts.

    Raises DataError with a one-line message naming the path and the fix.  CIFAR-10 and
    MNIST files that are missing are downloaded here (call it once, before starting
    worker processes); get_dataset never downloads.
    """
    if args.dataset not in _CHECKS:
        raise DataError(f"unknown --dataset {args.dataset!r}: choose one of {', '.join(DATASETS)}")
    _CHECKS[args.dataset](args)


def _folder_dataset(args, train):
    if _folder_is_lmdb(args.datadir):
        return ImageLmdb(find_image_lmdb(args.datadir), args.image_size, flip=train)
    return ImageFolder(args.datadir, args.image_size, flip=train)


_BUILDERS = {
    "cifar10": lambda args, train: Cifar10(_root(args), args.image_size, train=train, flip=train),
    "stackmnist": lambda args, train: StackedMNIST(_root(args), args.image_size, train=train),
    "lsun": lambda args, train: LsunLmdb(
        find_lsun_lmdb(args.datadir), args.image_size, flip=train, limit=_lsun_limit(args)),
    "celeba_256": lambda args, train: ImageLmdb(find_image_lmdb(args.datadir), args.image_size, flip=train),
    "ffhq_256": lambda args, train: ImageLmdb(find_image_lmdb(args.datadir), args.image_size, flip=train),
    "folder": _folder_dataset,
    "stacked_digits": lambda args, train: StackedDigits(
        args.image_size, getattr(args, "stacked_digits_length", DEFAULT_DIGITS_LENGTH), train=train),
}


def get_dataset(args, train=True):
    """The Dataset selected by ``args.dataset`` (root ``args.datadir``, side ``args.image_size``)."""
    if args.dataset not in _BUILDERS:
        raise DataError(f"unknown --dataset {args.dataset!r}: choose one of {', '.join(DATASETS)}")
    return _BUILDERS[args.dataset](args, train)
