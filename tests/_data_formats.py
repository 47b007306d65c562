"""Tiny data sets written in each loader's real on-disk format (for tests anywhere in the suite).

- ``write_cifar10(root)``: ROOT/cifar-10-batches-py with data_batch_1..5, test_batch, batches.meta,
  pickled as the published files are (Python 2, protocol 2: ``python2_pickle``).
- ``write_mnist(root, images, labels)``: ROOT/MNIST/raw idx files (plain or .gz).
- ``write_lsun_lmdb(path, images)``: an LSUN-style LMDB (hex ids -> WebP/JPEG bytes).
- ``write_image_folder(root, images)``: a nested folder of PNG/JPEG files.
- ``write_nvae_lmdb(path, images)``: NVAE's layout (keys "0", "1", ... -> raw RGB bytes).
- ``write_pngs(folder, images)``, ``read_pngs(folder, count)``: 0.png, 1.png, ... as test_ddgan.py
  names its samples.
"""

import gzip
import hashlib
import io
import os
import pickle
import struct
from pathlib import Path

import lmdb
import numpy as np
from PIL import Image


def random_images(count, height=32, width=None, seed=0):
    """uint8 (count, height, width, 3) noise (square when ``width`` is not given)."""
    return np.random.default_rng(seed).integers(0, 256, (count, height, width or height, 3), dtype=np.uint8)


def asymmetric_image(height, width):
    """uint8 (height, width, 3): bright left half, dark right half, so a flip is visible."""
    image = np.full((height, width, 3), 30, dtype=np.uint8)
    image[:, : width // 2] = 220
    return image


def encode(array, fmt="PNG", **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decode(data):
    """Encoded bytes -> uint8 (H, W, 3)."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


class _Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did for the CIFAR-10 files: protocol 2, every string (bytes, and
    the str that numpy's dtype pickles) as a py2 ``str`` opcode rather than Python 3's
    ``_codecs.encode`` call or unicode opcodes, and numpy under ``numpy.core.multiarray``."""

    dispatch = dict(pickle._Pickler.dispatch)
    reconstruct = np.zeros(0).__reduce__()[0]

    def save_py2_str(self, text):
        data = text.encode("latin-1") if isinstance(text, str) else text
        short = len(data) < 256
        size = bytes([len(data)]) if short else struct.pack("<i", len(data))
        self.write((pickle.SHORT_BINSTRING if short else pickle.BINSTRING) + size + data)
        self.memoize(text)

    dispatch[bytes] = dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is not self.reconstruct:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
        self.memoize(obj)


def python2_pickle(obj):
    """The bytes Python 2 would have written for ``obj`` (dicts, lists, ints, bytes as str, arrays)."""
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_cifar10(root, per_batch=4, seed=0, first=None):
    """CIFAR-10 python batches; returns {batch name: (uint8 (n, 32, 32, 3), labels)}.
    ``first`` (uint8 (32, 32, 3)) replaces the first training image."""
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images = random_images(per_batch, 32, 32, seed=seed + i)
        if first is not None and i == 0:
            images[0] = first
        labels = [int(v) for v in np.random.default_rng(seed + i).integers(0, 10, per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": labels,
                 b"data": images.transpose(0, 3, 1, 2).reshape(per_batch, 3072),
                 b"filenames": [f"image_{k}.png".encode() for k in range(per_batch)]}
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(python2_pickle(batch))
        written[name] = (images, labels)
    with open(os.path.join(folder, "batches.meta"), "wb") as handle:
        handle.write(python2_pickle({b"label_names": [f"class{k}".encode() for k in range(10)]}))
    return written


def _idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(root, images, labels, train=True, gz=False):
    """MNIST idx files for a split under ROOT/MNIST/raw."""
    folder = os.path.join(root, "MNIST", "raw")
    os.makedirs(folder, exist_ok=True)
    split = "train" if train else "t10k"
    for name, array in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
        opener = gzip.open if gz else open
        with opener(os.path.join(folder, name + (".gz" if gz else "")), "wb") as handle:
            handle.write(_idx_bytes(np.asarray(array)))


def mnist_like_digits(count, offset=0):
    """(uint8 (count, 28, 28), labels): scikit-learn's 8x8 digits scaled to 28 px, MNIST-like."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    index = (np.arange(count) + offset) % len(digits.images)
    images = [np.asarray(Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).resize(
        (20, 20), Image.Resampling.BILINEAR)) for i in index]
    padded = np.zeros((count, 28, 28), dtype=np.uint8)
    padded[:, 4:24, 4:24] = np.stack(images)
    return padded, digits.target[index].astype(np.uint8)


def _write_lmdb(path, items):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    env = lmdb.open(path, map_size=1 << 26)
    with env.begin(write=True) as txn:
        for key, value in items:
            txn.put(key, value)
    env.close()


def write_lsun_lmdb(path, images, fmt="WEBP"):
    """LSUN layout: 40-hex-character ids -> encoded images (lossless WebP by default); returns the
    id of each image (the LMDB itself is in sorted key order)."""
    options = {"lossless": True} if fmt == "WEBP" else {"quality": 95}
    keys = [hashlib.sha1(str(i).encode()).hexdigest().encode() for i in range(len(images))]
    _write_lmdb(path, [(key, encode(image, fmt, **options)) for key, image in zip(keys, images, strict=True)])
    return keys


def write_nvae_lmdb(path, images, raw=True):
    """NVAE's layout: keys "0", "1", ... -> raw RGB bytes of square images (or, raw=False, the
    given encoded bytes)."""
    values = [np.ascontiguousarray(image).tobytes() for image in images] if raw else images
    _write_lmdb(path, [(str(i).encode(), value) for i, value in enumerate(values)])


def write_image_folder(root, images, nested=True):
    """Images as PNG (even index) and JPEG (odd) files, spread over subfolders; returns relative paths."""
    paths = []
    for i, image in enumerate(images):
        folder = (os.path.join(f"part{i % 2}", "deeper") if i % 3 == 0 else f"part{i % 2}") if nested else ""
        name = os.path.join(folder, f"img{i:03d}" + (".png" if i % 2 == 0 else ".jpg"))
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        Image.fromarray(image).save(os.path.join(root, name), quality=95)
        paths.append(name)
    return paths


def write_pngs(folder, images):
    """(N, H, W, 3) or (N, H, W) uint8 images as lossless 0.png, 1.png, ... in ``folder``; returns it as a Path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index}.png")
    return folder


def read_pngs(folder, count):
    """uint8 (count, H, W[, C]) from 0.png .. {count - 1}.png in ``folder``."""
    return np.stack([np.asarray(Image.open(Path(folder) / f"{index}.png")) for index in range(count)])


# ----------------------------------------------------------------------------- broken data, for the error tests

class RunsCode:
    """Unpickling this runs ``command`` through os.system: what a tampered pickle could do."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def write_tampered_cifar10(root, command="touch code_ran"):
    """CIFAR-10 batches whose first training batch would run ``command`` when unpickled."""
    write_cifar10(root)
    with open(os.path.join(root, "cifar-10-batches-py", "data_batch_1"), "wb") as handle:
        pickle.dump({b"data": RunsCode(command), b"labels": []}, handle)


def images_with(root, bad):
    """Two PNG files and ``bad.png`` (listed first): a FIFO ("fifo"), a link to nothing ("broken_link")
    or bytes that are not an image ("corrupt").  Returns ``root``."""
    write_image_folder(root, random_images(2, 8, 8), nested=False)
    path = os.path.join(root, "bad.png")
    if bad == "fifo":
        os.mkfifo(path)
    elif bad == "broken_link":
        os.symlink(os.path.join(root, "moved_away.png"), path)
    else:
        with open(path, "wb") as handle:
            handle.write(b"\x89PNG cut short")
    return root


def tiny_lsun_lmdb(path):
    """An LSUN-layout LMDB of one image at ``path``; returns ``path``."""
    write_lsun_lmdb(str(path), random_images(1, 8, 8))
    return path


def write_truncated_lmdb(path, count=40):
    """An LSUN-layout LMDB whose data.mdb lost its second half (a copy cut short)."""
    write_lsun_lmdb(str(path), random_images(count, 16, 16))
    data = os.path.join(path, "data.mdb")
    os.truncate(data, os.path.getsize(data) // 2)
    return path


def unwritable_folder(scratch):
    """A folder in which no file can be created: read-only permissions, or (for root, whom
    permissions do not stop) /sys, where nobody may create anything."""
    if os.geteuid() == 0:
        return "/sys"
    locked = os.path.join(scratch, "locked")
    os.makedirs(locked)
    os.chmod(locked, 0o555)
    return locked
