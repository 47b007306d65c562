"""LSUN scene LMDBs as distributed (e.g. church_outdoor_train_lmdb).

Each database maps an image id (40 hex characters, as bytes) to the image's encoded
bytes (WebP in the public release).  Images are taken in the database's key order, as
torchvision's LSUN class (which the reference used) does, so ``--lsun_subset``'s first
120,000 images are the reference's.  Read with our own small reader: torchvision's LSUN
class writes a key cache into the working directory.
"""

import argparse
import os

from datasets_prep.common import decode_image
from datasets_prep.errors import DataError
from datasets_prep.lmdb_io import LmdbDataset, is_lmdb, open_readonly

LSUN_FOLDER = "church_outdoor_train_lmdb"
LSUN_SUBSET = 120_000


def find_lsun_lmdb(datadir):
    """The LSUN LMDB: ``datadir`` itself or ``datadir/church_outdoor_train_lmdb``."""
    if not datadir:
        raise DataError(f"--datadir is required for --dataset lsun: pass the folder holding {LSUN_FOLDER}")
    for candidate in (datadir, os.path.join(datadir, LSUN_FOLDER)):
        if is_lmdb(candidate):
            return candidate
    if not os.path.exists(datadir):
        raise DataError(f"--datadir {datadir} does not exist: pass the folder holding {LSUN_FOLDER}")
    raise DataError(f"no LSUN LMDB in {datadir}: put {LSUN_FOLDER} (with its data.mdb) there, "
                    "or pass the LMDB folder itself")


def lsun_keys(path, limit=None):
    """The first ``limit`` (all if None) image ids of an LSUN LMDB, in key order."""
    keys = []
    with open_readonly(path).begin() as txn:
        for key in txn.cursor().iternext(keys=True, values=False):
            if limit is not None and len(keys) >= limit:
                break
            keys.append(bytes(key))
    if not keys:
        raise DataError(f"the LSUN LMDB {path} is empty: re-download or re-extract it")
    return keys


class LsunLmdb(LmdbDataset):
    """LSUN images resized (shorter side) and centre-cropped to ``size``.

    Items: (float tensor (3, size, size) in [-1, 1], 0).
    """

    def __init__(self, path, size, flip, limit=None):
        super().__init__(path, size, flip)
        self.keys = lsun_keys(path, limit)

    def __len__(self):
        return len(self.keys)

    def load(self, index):
        key = self.keys[index]
        return decode_image(self.read(key), f"{self.path} key {key.decode(errors='replace')}")


def add_flags(group):
    """The registry's flags for lsun: --lsun_subset."""
    group.add_argument("--lsun_subset", action=argparse.BooleanOptionalAction, default=True,
                       help=f"LSUN: train on the first {LSUN_SUBSET:,} images only, as the reference does")


def build(args, root, train, flip):
    """The registry's loader: the first LSUN_SUBSET images, or all with --no-lsun_subset."""
    limit = LSUN_SUBSET if getattr(args, "lsun_subset", True) else None
    return LsunLmdb(find_lsun_lmdb(root), args.image_size, flip, limit=limit)


def check(args, root):
    """The registry's check: the LMDB opens and holds at least one image id."""
    lsun_keys(find_lsun_lmdb(root), limit=1)
