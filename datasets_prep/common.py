"""What the loaders share: image decoding and listing, transforms, downloads, the decoded-image base."""

import io
import os
import socket
import stat

import torch.utils.data
from PIL import Image, ImageOps, UnidentifiedImageError

from datasets_prep.errors import DataError
from utils.files import NO_DOWNLOAD_ENV_VAR, downloads_allowed
from utils.images import to_rgb

DOWNLOAD_TIMEOUT_S = 60
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".gif")
CHECK_COMMAND = "python -m datasets_prep.prepare_lmdb --check"
_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                (stat.S_ISBLK, "a device"))


def image_transform(size, crop=False, flip=False):
    """PIL image -> float tensor (3, size, size) in [-1, 1]: resize the shorter side to ``size``,
    optionally centre-crop to a square and flip left-right at random (torch's global RNG)."""
    from torchvision import transforms  # here, as in utils.sampling: importing torchvision slows every command's start

    steps = [transforms.Resize(size)]
    if crop:
        steps.append(transforms.CenterCrop(size))
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    return transforms.Compose(steps)


def open_image(data, where):
    """Encoded bytes -> the decoded PIL image, in its own mode; DataError naming ``where`` if they
    are not a whole image."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{where} is not a readable image ({error}): delete or re-encode it") from None
    return image


def decode_image(data, where):
    """Encoded bytes -> 8-bit RGB PIL image (utils.images.to_rgb: a 16-bit PNG keeps its range
    instead of turning white); DataError naming ``where`` if they are not an image."""
    return to_rgb(open_image(data, where))


def read_file(path):
    """The bytes of ``path``; DataError naming it if it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise DataError(f"cannot read {path} ({error.strerror}): restore it or remove it") from None


def load_image_file(path):
    """An image file as an 8-bit RGB PIL image; DataError naming the file if it cannot be decoded."""
    return decode_image(read_file(path), path)


def fit_square(image, size):
    """Scale the shorter side to ``size`` (Lanczos) and centre-crop to ``size`` x ``size``."""
    if image.size == (size, size):
        return image
    return ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS)


def require_regular_file(path, folder):
    """DataError if ``path`` (listed under ``folder``) is not a regular file, or a link to one: a FIFO
    would block the reader forever, a broken link cannot be read."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        kind = "a broken symbolic link" if os.path.islink(path) else f"unreadable ({error.strerror})"
        raise DataError(f"{path} is {kind}: remove it from {folder} or restore its target") from None
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), None)
    if kind:
        raise DataError(f"{path} is {kind}, not an image file: remove it from {folder}")


def _unlistable(error):
    raise DataError(f"cannot list the folder {error.filename} ({error.strerror}): fix its permissions "
                    "or move it out of the data")


def list_images(root):
    """Relative paths of the image files under ``root`` (recursive), sorted for a stable order.

    Links to folders are followed, each folder read once (so a link to a parent does not loop).
    DataError for a folder that cannot be listed or an image name that is not a regular file.
    """
    found, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True, onerror=_unlistable):
        real = os.path.realpath(folder)
        subfolders.sort()
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                require_regular_file(os.path.join(folder, name), root)
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


def torchvision_download(name, root, missing, fix):
    """Download the torchvision data set ``torchvision.datasets.{name}`` into ``root`` (not when
    $DDGAN_NO_DOWNLOAD is set).

    On failure: DataError "{missing} and downloading it failed ({reason}): {fix}".
    """
    if not downloads_allowed():
        raise DataError(f"{missing} and downloads are off (${NO_DOWNLOAD_ENV_VAR} is set): {fix}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        import torchvision.datasets  # here, as in image_transform

        getattr(torchvision.datasets, name)(root, train=True, download=True)
    except Exception as error:  # any network, disk or checksum failure means the same to the user
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{missing} and downloading it failed ({reason}): {fix}") from None
    finally:
        socket.setdefaulttimeout(previous)


class DecodedImages(torch.utils.data.Dataset):
    """Base of the data sets that decode one stored image per item (a folder, the LMDBs).

    Subclasses define ``__len__`` and ``load(index)`` -> RGB PIL image, raising DataError that
    names the file or key.  Items: (float tensor (3, size, size) in [-1, 1], 0), shorter side
    resized and centre-cropped.  An unreadable image met while training stops it with a DataError
    that also says how to list every unreadable image of ``source``.
    """

    def __init__(self, source, size, flip):
        self.source = source
        self.transform = image_transform(size, crop=True, flip=flip)

    def load(self, index):
        raise NotImplementedError

    def __getitem__(self, index):
        try:
            image = self.load(index)
        except DataError as error:
            raise DataError(f"{error}; {CHECK_COMMAND} {self.source} lists every unreadable image") from None
        return self.transform(image), 0
