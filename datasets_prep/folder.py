"""Any folder tree of images (``--dataset folder``).

Files are found recursively by extension (see ``common.IMAGE_EXTENSIONS``) and taken in
sorted path order.  A file that does not decode stops training with an error naming it
(rather than silently training on a different set); prepare_lmdb.py, which checks every
image once, skips such files with a count instead.
"""

import os

import torch.utils.data

from datasets_prep.common import IMAGE_EXTENSIONS, DataError, image_transform, list_images, load_image_file


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


class ImageFolder(torch.utils.data.Dataset):
    """Images resized (shorter side) and centre-cropped to ``size``.

    Items: (float tensor (3, size, size) in [-1, 1], 0).
    """

    def __init__(self, root, size, flip):
        self.root = root
        self.files = find_images(root)
        self.transform = image_transform(size, crop=True, flip=flip)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        return self.transform(load_image_file(os.path.join(self.root, self.files[index]))), 0
