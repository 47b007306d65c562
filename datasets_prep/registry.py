"""The table of data sets: one row per ``--dataset`` value.

A row names the data set's loader and up-front check, its default ``--datadir``, whether
training flips its images and the model defaults that go with it (image channels,
``--ch_mult``).  Adding a data set means adding a row (and the module its functions live
in).  The scripts read the table when they start (``add_dataset_flags``), so this module imports
nothing heavy: the functions a row names, as ``"module:function"``, are imported when first called.

Every data set yields (float tensor (C, H, W) in [-1, 1], int label or 0).  ``train=True``
is the training split, flipped left-right at random where the row says so; ``train=False``
never flips and takes the test split where the data set has one (CIFAR-10 test_batch,
MNIST t10k, the held-out digits), else the same images.
"""

import importlib
from dataclasses import dataclass

from datasets_prep.errors import DataError


@dataclass(frozen=True)
class DataSet:
    """One row.  ``loader(args, root, train, flip)`` returns the torch Dataset; ``check(args, root)``
    raises DataError (one line naming the path and the fix) if the data cannot be read, and may
    download what is missing; ``flags(group)`` adds the data set's own flags.  ``root`` is
    ``--datadir``, else ``default_root`` (None: the loader asks for ``--datadir``)."""

    loader: str
    check: str | None = None
    flags: str | None = None
    default_root: str | None = None
    flips: bool = True
    channels: int = 3
    ch_mult: tuple[int, ...] | None = None  # default --ch_mult; None: by --image_size


SMALL, LARGE = (1, 2, 2, 2), (1, 1, 2, 2, 4, 4)  # the reference's --ch_mult for 32 px and 256 px

DATA_SETS = {
    "cifar10": DataSet("datasets_prep.cifar:build", "datasets_prep.cifar:check",
                       default_root="./data", ch_mult=SMALL),
    "stackmnist": DataSet("datasets_prep.stackmnist:build", "datasets_prep.stackmnist:check",
                          default_root="./data", flips=False, ch_mult=SMALL),
    "lsun": DataSet("datasets_prep.lsun:build", "datasets_prep.lsun:check", "datasets_prep.lsun:add_flags",
                    ch_mult=LARGE),
    "celeba_256": DataSet("datasets_prep.lmdb_io:build", "datasets_prep.lmdb_io:check", ch_mult=LARGE),
    "ffhq_256": DataSet("datasets_prep.lmdb_io:build", "datasets_prep.lmdb_io:check", ch_mult=LARGE),
    "folder": DataSet("datasets_prep.folder:build", "datasets_prep.folder:check"),
    "stacked_digits": DataSet("datasets_prep.digits:build", flags="datasets_prep.digits:add_flags",
                              flips=False, ch_mult=SMALL),
}


def dataset_names():
    """The values --dataset accepts, in the table's order."""
    return tuple(DATA_SETS)


def resolve(reference):
    """The function a row names as ``"module:function"`` (importing the module)."""
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


def _row(args):
    if args.dataset not in DATA_SETS:
        raise DataError(f"unknown --dataset {args.dataset!r}: choose one of {', '.join(DATA_SETS)}")
    return DATA_SETS[args.dataset]


def data_root(args):
    """``--datadir``, else the data set's default root (None if it has none)."""
    return args.datadir or _row(args).default_root


def add_dataset_flags(parser):
    """--dataset and --datadir: both scripts."""
    group = parser.add_argument_group("data set")
    group.add_argument("--dataset", default="cifar10", choices=dataset_names(), help="data set")
    group.add_argument("--datadir", default=None, help="root folder (or LMDB) of the data set")
    return group


def default_ch_mult(dataset):
    """The data set's default --ch_mult (None: by --image_size, utils.flags)."""
    row = DATA_SETS.get(dataset)
    return list(row.ch_mult) if row is not None and row.ch_mult else None


def add_data_flags(parser):
    """The data sets' own flags (training), in one "data" group."""
    group = parser.add_argument_group("data")
    for row in DATA_SETS.values():
        if row.flags:
            resolve(row.flags)(group)
    return group


def check_data(args):
    """Check that ``args.dataset`` can be read before any work starts; DataError names the path and fix.

    Missing CIFAR-10 and MNIST files are downloaded here (call it once, before starting worker
    processes); get_dataset never downloads.
    """
    row = _row(args)
    if row.check:
        resolve(row.check)(args, data_root(args))


def get_dataset(args, train=True):
    """The Dataset selected by ``args.dataset`` (root ``args.datadir``, side ``args.image_size``)."""
    row = _row(args)
    return resolve(row.loader)(args, data_root(args), train, train and row.flips)
