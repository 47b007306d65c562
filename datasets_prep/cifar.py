"""CIFAR-10 from its python batches (``ROOT/cifar-10-batches-py``).

We read the batches ourselves rather than through torchvision's CIFAR10 class, whose
md5 checks reject anything but the exact published files; torchvision is still what
downloads them.  Each batch is a dict pickled by Python 2 (protocol 2): ``b"data"`` uint8
(N, 3072) in channel-major order (1024 R, 1024 G, 1024 B values per image), ``b"labels"``
N ints, ``b"batch_label"`` and ``b"filenames"`` strings.  A pickle can name any function to
call; ours admits only the few numpy names that rebuild such an array, so a tampered batch
file is refused instead of running code.
"""

import os
import pickle

import numpy as np
import torch.utils.data
from PIL import Image

from datasets_prep.common import image_transform, torchvision_download
from datasets_prep.errors import DataError

CIFAR_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array-rebuilding function
_BATCH_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # the name in the published files
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # the name numpy >= 2 writes
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays, and nothing else."""

    def find_class(self, module, name):
        try:
            return _BATCH_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-10 batch never does; "
                                         "it may have been tampered with") from None


def cifar_paths(root, train=True):
    """The batch files of the split."""
    return [os.path.join(root, CIFAR_FOLDER, name) for name in (TRAIN_BATCHES if train else TEST_BATCHES)]


def cifar_present(root, train=True):
    """True if every batch of the split is on disk."""
    return all(os.path.isfile(path) for path in cifar_paths(root, train))


def download_cifar10(root):
    """Download and extract CIFAR-10 into ``root`` with torchvision; DataError if that fails."""
    torchvision_download("CIFAR10", root,
                         f"CIFAR-10 is not in {os.path.join(root, CIFAR_FOLDER)}",
                         f"put the extracted {CIFAR_FOLDER} folder under {root}")


def read_batch(path):
    """One batch file -> (uint8 images (N, 32, 32, 3), int64 labels (N,)).  No code in the file runs."""
    try:
        with open(path, "rb") as handle:
            entry = _BatchUnpickler(handle, encoding="bytes").load()
        data = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry[b"labels"], dtype=np.int64)
    except FileNotFoundError:
        raise DataError(f"{path} is missing: put the extracted {CIFAR_FOLDER} folder there") from None
    except (pickle.UnpicklingError, OSError, EOFError, KeyError, ValueError, TypeError, AttributeError,
            IndexError) as error:
        reason = str(error) if isinstance(error, pickle.UnpicklingError) else type(error).__name__
        raise DataError(f"{path} is not a CIFAR-10 python batch ({reason}): delete {CIFAR_FOLDER} and "
                        "download it again, or re-extract cifar-10-python.tar.gz") from None
    if len(labels) != len(data):
        raise DataError(f"{path} has {len(data)} images but {len(labels)} labels: re-extract the archive")
    return data.transpose(0, 2, 3, 1), labels


class Cifar10(torch.utils.data.Dataset):
    """CIFAR-10 resized to ``size`` (the reference: Resize(32), random flip).

    Items: (float tensor (3, size, size) in [-1, 1], class index).
    """

    def __init__(self, root, size=32, train=True, flip=True):
        batches = [read_batch(path) for path in cifar_paths(root, train)]
        self.images = np.concatenate([images for images, _ in batches])
        self.labels = np.concatenate([labels for _, labels in batches])
        self.transform = image_transform(size, flip=flip)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def build(args, root, train, flip):
    """The registry's loader."""
    return Cifar10(root, args.image_size, train=train, flip=flip)


def check(args, root):
    """The registry's check: the training batches are there, else they are downloaded."""
    if not cifar_present(root):
        download_cifar10(root)
