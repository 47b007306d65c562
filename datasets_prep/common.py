"""What every loader shares: the error type, image decoding, transforms, image listing."""

import io
import os
import socket

from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import transforms

DOWNLOAD_TIMEOUT_S = 60
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".gif")


class DataError(ValueError):
    """A data set that is missing, incomplete or unreadable; the message says how to fix it."""


def image_transform(size, crop=False, flip=False):
    """PIL image -> float tensor (3, size, size) in [-1, 1]: resize the shorter side to ``size``,
    optionally centre-crop to a square and flip left-right at random (torch's global RNG)."""
    steps = [transforms.Resize(size)]
    if crop:
        steps.append(transforms.CenterCrop(size))
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    return transforms.Compose(steps)


def decode_image(data, where):
    """Encoded bytes -> RGB PIL image; DataError naming ``where`` if they are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{where} is not a readable image ({error}): delete or re-encode it") from None


def load_image_file(path):
    """An image file as an RGB PIL image; DataError naming the file if it cannot be decoded."""
    with open(path, "rb") as handle:
        return decode_image(handle.read(), path)


def fit_square(image, size):
    """Scale the shorter side to ``size`` (Lanczos) and centre-crop to ``size`` x ``size``."""
    if image.size == (size, size):
        return image
    return ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS)


def list_images(root):
    """Relative paths of the image files under ``root`` (recursive), sorted for a stable order."""
    found = []
    for folder, _, files in os.walk(root, followlinks=True):
        found += [os.path.relpath(os.path.join(folder, name), root)
                  for name in files if name.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def torchvision_download(dataset_class, root, missing, fix):
    """Download a torchvision data set into ``root``.

    On failure: DataError "{missing} and downloading it failed ({reason}): {fix}".
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        dataset_class(root, train=True, download=True)
    except Exception as error:  # any network, disk or checksum failure means the same to the user
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{missing} and downloading it failed ({reason}): {fix}") from None
    finally:
        socket.setdefaulttimeout(previous)
