"""Image LMDBs: the layout prepare_lmdb.py writes and the loader that reads it.

Layout (the reference's CelebA-HQ / stylegan2-style LMDB): key ``f"{resolution}-{index:05d}"``
-> encoded image bytes (PNG, or the source file's JPEG/WebP/PNG bytes when it already had
the right size), plus ``length`` -> the number of images as ASCII digits.  While
prepare_lmdb.py is still writing, the database lives at ``OUTPUT.partial`` and holds a
``__ddgan_progress__`` key; it is renamed to ``OUTPUT`` only once complete, so a loader
never mistakes a half-written database for a whole one.

The loader also reads NVAE's layout, which the reference's ``celeba_256`` loader used:
``ROOT/train.lmdb`` with keys ``"0"``, ``"1"``, ... -> raw RGB bytes (side x side x 3) or
encoded images (decided once, from the first value), no ``length`` key.
"""

import math
import os
import re

import numpy as np
from PIL import Image

from datasets_prep.common import DecodedImages, decode_image
from datasets_prep.errors import DataError

LENGTH_KEY = b"length"
PROGRESS_KEY = b"__ddgan_progress__"
PARTIAL_SUFFIX = ".partial"
PREPARE_HINT = "create it with: python -m datasets_prep.prepare_lmdb --input IMAGES --output LMDB"
# realpath -> (pid, environment): py-lmdb allows one open environment per file per process,
# and one inherited through fork must be closed before the child opens its own.
_OPEN = {}


def image_key(resolution, index):
    """The key of image ``index`` at ``resolution`` (stylegan2-style, zero-padded to 5 digits)."""
    return f"{resolution}-{index:05d}".encode()


def is_lmdb(path):
    """True if ``path`` is an LMDB environment folder (holds data.mdb)."""
    return os.path.isfile(os.path.join(path, "data.mdb"))


def _lmdb_module(path):
    """The lmdb package, imported here (only LMDB data sets need it); DataError if it is missing."""
    try:
        import lmdb
    except ImportError:
        raise DataError(f"reading the LMDB {path} needs the lmdb package: pip install lmdb") from None
    return lmdb


def _require_whole(env, path):
    """DataError if data.mdb is shorter than its own header says (a copy or download cut short):
    reading the missing pages would kill the process with SIGBUS."""
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = os.path.getsize(os.path.join(path, "data.mdb"))
    if size < needed:
        env.close()
        raise DataError(f"{path}/data.mdb is truncated ({size:,} of {needed:,} bytes): copy or "
                        "download it again, or re-create the LMDB")


def open_readonly(path):
    """This process's read-only, lock-free environment for ``path``, opened on first use and kept
    (so data sets sharing a path, and DataLoader workers after fork, each get a usable handle)."""
    key = os.path.realpath(path)
    pid, env = _OPEN.get(key, (None, None))
    if pid == os.getpid():
        return env
    if env is not None:
        env.close()  # the parent's handle, inherited through fork
    lmdb = _lmdb_module(path)
    try:
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False, max_readers=256)
    except lmdb.Error as error:
        raise DataError(f"cannot open the LMDB {path} ({error}): check the path or re-create it") from None
    _require_whole(env, path)
    _OPEN[key] = (os.getpid(), env)
    return env


def release(path):
    """Close this process's reader of ``path``, if any (before opening it for writing)."""
    entry = _OPEN.pop(os.path.realpath(path), None)
    if entry is not None:
        entry[1].close()


def find_image_lmdb(datadir):
    """The LMDB for an image data set: ``datadir`` itself or NVAE's ``datadir/train.lmdb``."""
    if not datadir:
        raise DataError(f"--datadir is required for this data set: pass the image LMDB ({PREPARE_HINT})")
    for candidate in (datadir, os.path.join(datadir, "train.lmdb")):
        if is_lmdb(candidate):
            return candidate
    if os.path.isdir(datadir + PARTIAL_SUFFIX):
        raise DataError(f"{datadir} is unfinished ({datadir}{PARTIAL_SUFFIX} exists): "
                        "re-run the same prepare_lmdb command to finish it")
    if not os.path.exists(datadir):
        raise DataError(f"--datadir {datadir} does not exist: {PREPARE_HINT}")
    raise DataError(f"no LMDB (data.mdb) in {datadir}: point --datadir at the LMDB folder, or {PREPARE_HINT}")


class LmdbDataset(DecodedImages):
    """Base for LMDB-backed data sets; holds only the path, so it pickles to spawned workers."""

    def __init__(self, path, size, flip):
        super().__init__(path, size, flip)
        self.path = path

    def read(self, key):
        """The value of ``key``; DataError naming the key if it is missing or its pages are damaged."""
        name = key.decode(errors="replace")
        try:
            with open_readonly(self.path).begin() as txn:
                data = txn.get(key)
        except _lmdb_module(self.path).Error as error:
            raise DataError(f"{self.path} key {name} cannot be read ({error}): re-create the LMDB") from None
        if data is None:
            raise DataError(f"key {name} is missing from {self.path}: re-create the LMDB")
        return data


def holds_indexed_images(path):
    """True if the LMDB has a layout ImageLmdb reads (or a prepare_lmdb progress record); False for
    other LMDBs, such as LSUN's."""
    with open_readonly(path).begin() as txn:
        return any(txn.get(key) is not None for key in (LENGTH_KEY, PROGRESS_KEY, b"0"))


def _resolutions(txn):
    """The resolutions present as ``f"{res}-{index}"`` keys, jumping over each block of keys."""
    found, cursor, start = set(), txn.cursor(), b""
    while cursor.set_range(start):
        key = cursor.key()
        match = re.fullmatch(rb"(\d+)-\d+", key)
        if match:
            found.add(int(match[1]))
            start = match[1] + b"."  # '.' sorts after '-' and before the digits
        else:
            start = key + b"\x00"
    return sorted(found)


def _pick_resolution(available, size, path):
    """The stored resolution to read for ``--image_size size``: exact, else next larger, else largest."""
    if not available:
        raise DataError(f"{path} has a 'length' key but no '<resolution>-<index>' images: {PREPARE_HINT}")
    larger = [res for res in available if res >= size]
    return larger[0] if larger else available[-1]


def _is_raw_rgb(value):
    """True if an NVAE value holds raw square RGB pixels rather than an encoded image."""
    side = math.isqrt(len(value) // 3)
    if side * side * 3 != len(value):
        return False
    try:
        decode_image(value, "")
    except DataError:
        return True
    return False


def inspect_image_lmdb(path, size):
    """Check an image LMDB and describe it: (length, resolution to read or None for NVAE's layout,
    whether values are raw RGB pixels)."""
    with open_readonly(path).begin() as txn:
        if txn.get(PROGRESS_KEY) is not None:
            raise DataError(f"{path} is an unfinished prepare_lmdb output: re-run the prepare_lmdb command")
        length = txn.get(LENGTH_KEY)
        if length is not None:
            if not length.isdigit():
                raise DataError(f"{path} has a 'length' key that is not a number ({bytes(length[:20])!r}): "
                                f"{PREPARE_HINT}")
            return int(length), _pick_resolution(_resolutions(txn), size, path), False
        first = txn.get(b"0")
        if first is not None:
            return txn.stat()["entries"], None, _is_raw_rgb(first)
    raise DataError(f"{path} is not an image LMDB (no 'length' key, no key '0'): "
                    f"for LSUN's own LMDBs use --dataset lsun, otherwise {PREPARE_HINT}")


def raw_rgb_image(value, where):
    """NVAE's raw pixels (side * side * 3 bytes) -> RGB image; DataError naming ``where`` otherwise."""
    side = math.isqrt(len(value) // 3)
    if side * side * 3 != len(value):
        raise DataError(f"{where} holds {len(value)} bytes, not the pixels of a square RGB image: "
                        "re-create the LMDB")
    return Image.fromarray(np.frombuffer(value, dtype=np.uint8).reshape(side, side, 3))


class ImageLmdb(LmdbDataset):
    """Images from an LMDB in either layout (see the module docstring).

    Items: (float tensor (3, size, size) in [-1, 1], 0).
    """

    def __init__(self, path, size, flip):
        super().__init__(path, size, flip)
        self.length, self.resolution, self.raw = inspect_image_lmdb(path, size)
        if self.length <= 0:
            raise DataError(f"{path} holds no images: {PREPARE_HINT}")

    def __len__(self):
        return self.length

    def key(self, index):
        if self.resolution is None:
            return str(index).encode()
        return image_key(self.resolution, index)

    def load(self, index):
        key = self.key(index)
        where = f"{self.path} key {key.decode()}"
        return raw_rgb_image(self.read(key), where) if self.raw else decode_image(self.read(key), where)


def build(args, root, train, flip):
    """The registry's loader for celeba_256 and ffhq_256 (and --dataset folder on an LMDB)."""
    return ImageLmdb(find_image_lmdb(root), args.image_size, flip)


def check(args, root):
    """The registry's check: the LMDB opens, is finished and holds images."""
    build(args, root, train=False, flip=False)
