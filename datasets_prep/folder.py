"""Any folder tree of images (``--dataset folder``), or a prepare_lmdb LMDB made from one.

Files are found recursively by extension (see ``common.IMAGE_EXTENSIONS``) and taken in
sorted path order; only regular files (or links to them) are read.  A file that does not
decode stops training with an error naming it (rather than silently training on a different
set); ``python -m datasets_prep.prepare_lmdb --check ROOT`` lists every such file.
"""

import os

from datasets_prep import lmdb_io
from datasets_prep.common import IMAGE_EXTENSIONS, DecodedImages, list_images, load_image_file
from datasets_prep.errors import DataError


def find_images(root, flag="--datadir"):
    """The sorted relative image paths under ``root``; DataError (naming ``flag``) if there are none."""
    if not root:
        raise DataError(f"{flag} is required for --dataset folder: pass a folder of images")
    if not os.path.isdir(root):
        raise DataError(f"{flag} {root} is not a folder: pass a folder of images")
    files = list_images(root)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}: "
                        f"point {flag} at the folder that holds them")
    return files


class ImageFolder(DecodedImages):
    """Images resized (shorter side) and centre-cropped to ``size``.

    Items: (float tensor (3, size, size) in [-1, 1], 0).
    """

    def __init__(self, root, size, flip, flag="--datadir"):
        super().__init__(root, size, flip)
        self.root = root
        self.files = find_images(root, flag)

    def __len__(self):
        return len(self.files)

    def load(self, index):
        return load_image_file(os.path.join(self.root, self.files[index]))


def _is_lmdb_output(root):
    """--dataset folder also takes a prepare_lmdb output (finished or not, for the right message)."""
    return bool(root) and (lmdb_io.is_lmdb(root) or os.path.isdir(root + lmdb_io.PARTIAL_SUFFIX))


def build(args, root, train, flip):
    """The registry's loader: an ImageFolder, or an ImageLmdb for a prepare_lmdb output."""
    if _is_lmdb_output(root):
        return lmdb_io.build(args, root, train, flip)
    return ImageFolder(root, args.image_size, flip)


def check(args, root):
    """The registry's check: the folder lists images and its first one decodes (or the LMDB opens)."""
    if _is_lmdb_output(root):
        lmdb_io.check(args, root)
    else:
        load_image_file(os.path.join(root, find_images(root)[0]))
