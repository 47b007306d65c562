"""Where evaluated images come from, and running a network over them in batches.

A source is a folder of image files (read with PIL, converted to RGB; not recursive) or a
sample array file: .npy, or .npz (key 'samples', else its first array) holding pixel values
in [0, 255] as (N, H, W, C), C = 1 or 3.  Every source yields (3, H, W) float tensors in
[0, 1], which is what ``InceptionV3`` takes.
"""

import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

IMAGE_EXTENSIONS = {"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"}
ARRAY_SUFFIXES = (".npy", ".npz")


class ImagePathDataset(Dataset):
    """Image files -> (3, H, W) floats in [0, 1] (or whatever ``transforms`` makes of the RGB image)."""

    def __init__(self, files, transforms=None):
        self.files = list(files)
        self.transforms = transforms

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        path = self.files[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except OSError as err:
            raise ValueError(f"cannot read image {path} ({err}): delete or replace the file") from err
        return pixels_to_tensor(np.asarray(image)) if self.transforms is None else self.transforms(image)


class SampleArrayDataset(Dataset):
    """(N, H, W, C) pixel values in [0, 255], C = 1 or 3 -> (3, H, W) floats in [0, 1]."""

    def __init__(self, samples):
        check_samples(samples)
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return pixels_to_tensor(self.samples[index])


def pixels_to_tensor(pixels):
    """(H, W, C) values in [0, 255], C = 1 or 3 -> (3, H, W) float32 in [0, 1] (grey repeated)."""
    image = torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 255).permute(2, 0, 1)
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def check_samples(samples):
    """Raise a ValueError saying how to fix an array that is not (N, H, W, C) pixels in [0, 255]."""
    shape = tuple(samples.shape)
    if len(shape) != 4 or shape[-1] not in (1, 3) or shape[0] == 0:
        channels_first = len(shape) == 4 and shape[1] in (1, 3)
        hint = "; if channels come first, save samples.transpose(0, 2, 3, 1)" if channels_first else ""
        raise ValueError(f"sample arrays must hold (N, H, W, 3) pixel values in [0, 255], "
                         f"got shape {shape}{hint}")
    if samples.dtype == np.uint8:
        return
    if not np.issubdtype(samples.dtype, np.number):
        raise ValueError(f"sample arrays must be numeric (uint8 in [0, 255]), got {samples.dtype}")
    low, high = samples.min(), samples.max()
    if low < 0 or high > 255:
        raise ValueError(f"sample values must lie in [0, 255], found [{low}, {high}]: rescale them")
    if high <= 1:
        raise ValueError("sample values lie in [0, 1]: multiply them by 255 (pixels in [0, 255] expected)")


def list_images(folder):
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.suffix.lower()[1:] in IMAGE_EXTENSIONS and p.is_file())


def load_sample_array(path):
    """The sample array in a .npy (memory-mapped) or .npz file ('samples', else the first array)."""
    try:
        data = np.load(path, mmap_mode="r")
        if isinstance(data, np.ndarray):
            return data
        if not data.files:
            raise ValueError("the archive is empty")
        return data["samples" if "samples" in data.files else data.files[0]]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read samples from {path} ({err}): save them with np.save/np.savez") from err


def open_images(path):
    """A Dataset of (3, H, W) images in [0, 1] from a folder of images or a .npy/.npz sample array."""
    path = Path(path)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise ValueError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {path}: "
                             "give a folder that holds the images")
        return ImagePathDataset(files)
    if path.is_file() and path.suffix.lower() in ARRAY_SUFFIXES:
        return SampleArrayDataset(load_sample_array(path))
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a folder of images or a .npy/.npz sample array")
    raise ValueError(f"{path} is neither a folder of images nor a .npy/.npz sample array")


def stack_images(batch):
    """Collate (3, H, W) images, with a clear error when they differ in size."""
    sizes = sorted({tuple(image.shape[1:]) for image in batch})
    if len(sizes) > 1:
        raise ValueError(f"images differ in size ({' vs '.join(f'{h}x{w}' for h, w in sizes)}): "
                         "resize them to one size first")
    return torch.stack(batch)


def map_batches(fn, dataset, batch_size=50, device="cpu", num_workers=0):
    """Run ``fn`` over ``dataset`` in order, in batches, without gradients.

    fn maps a (B, 3, H, W) batch on ``device`` to a (B, D) tensor, or to a tuple of them;
    the result is the (N, D) float64 array, or the tuple of them.
    """
    if len(dataset) == 0:
        raise ValueError("no images to evaluate")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=stack_images)
    parts = []
    with torch.no_grad():
        for batch in tqdm(loader, disable=None, unit="batch", leave=False):
            out = fn(batch.to(device))
            single = not isinstance(out, tuple)
            parts.append([t.float().cpu() for t in ((out,) if single else out)])
    arrays = tuple(torch.cat(column).numpy().astype(np.float64) for column in zip(*parts, strict=True))
    return arrays[0] if single else arrays
