"""Where evaluated images come from, and running a network over them in batches.

A source is a folder of image files (not recursive; decoded with PIL and brought to 8-bit RGB
by value range, so 16-bit PNGs keep their contrast) or a sample array file: .npy, or .npz (key
'samples', else its first array) holding (N, H, W, C) pixels, C = 1 or 3, in one of the ranges
that ``pixel_range`` tells apart (the one rule of every reader of sample arrays, mode coverage
included): uint8 [0, 255]; float [-1, 1], [0, 1] or [0, 255].  Arrays stored uncompressed
(np.save, np.savez, test_ddgan.py's samples.npz) are memory-mapped, not read whole.  A sample
folder written by test_ddgan.py must be whole (``utils.outputs``).  Every source yields (3, H, W)
float tensors in [0, 1], which is what ``InceptionV3`` takes.
"""

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from utils import outputs
from utils.images import to_rgb

IMAGE_EXTENSIONS = {"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"}
ARRAY_SUFFIXES = (".npy", ".npz")
STATS_KEYS = ("mu", "sigma")
SAMPLES_KEY = "samples"
_NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
PIXEL_RANGES = "uint8 [0, 255]; float [-1, 1], [0, 1] or [0, 255]"
# Floats above 1 are [0, 255] only if some value exceeds this: below it they would be a nearly black
# image set, or [0, 1] values that overshoot; such an array is refused rather than guessed.
DARKEST_0_255_MAX = 2


class ImagePathDataset(Dataset):
    """Image files -> RGB PIL images (as pytorch-fid), or whatever ``transforms`` makes of them
    (``image_to_tensor``: (3, H, W) floats in [0, 1])."""

    def __init__(self, files, transforms=None):
        self.files = list(files)
        self.transforms = transforms

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        path = self.files[index]
        try:
            with Image.open(path) as image:
                image.load()  # decode now: the file closes here
                image = to_rgb(image)
        except (OSError, ValueError, SyntaxError) as err:
            raise ValueError(f"cannot read image {path} ({err}): delete or replace the file") from err
        return image if self.transforms is None else self.transforms(image)


def image_to_tensor(image):
    """An RGB PIL image -> (3, H, W) float32 in [0, 1] (torchvision's ToTensor)."""
    return pixels_to_tensor(np.asarray(image))


class SampleArrayDataset(Dataset):
    """(N, H, W, C) pixels, C = 1 or 3, in a range ``pixel_range`` reads -> (3, H, W) floats in [0, 1].
    ``where`` names the array in errors."""

    def __init__(self, samples, where="sample arrays"):
        self.value_range = check_samples(samples, where)
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return pixels_to_tensor(self.samples[index], self.value_range)


def pixels_to_tensor(pixels, value_range=(0, 255)):
    """(H, W, C) values in ``value_range``, C = 1 or 3 -> (3, H, W) float32 in [0, 1] (grey repeated)."""
    low, high = value_range
    image = torch.from_numpy((np.asarray(pixels, dtype=np.float32) - low) / (high - low)).permute(2, 0, 1)
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def check_samples(samples, where="sample arrays"):
    """The value range (low, high) of (N, H, W, C) pixels, C = 1 or 3; a ValueError saying how to fix
    any other array."""
    shape = tuple(samples.shape)
    if len(shape) != 4 or shape[-1] not in (1, 3) or shape[0] == 0:
        channels_first = len(shape) == 4 and shape[1] in (1, 3)
        hint = "; if channels come first, save samples.transpose(0, 2, 3, 1)" if channels_first else ""
        raise ValueError(f"{where} must hold (N, H, W, 3) pixel values, got shape {shape}{hint}")
    return pixel_range(samples, where)


def pixel_range(samples, where="sample arrays"):
    """The range (low, high) that the pixel values of the array ``samples`` lie in, by one rule for
    every reader: uint8 and other integers [0, 255]; floats [-1, 1] when some value is negative, else
    [0, 1] when none is above 1, else [0, 255].  A ValueError (one line, naming ``where`` and the values
    found) for values outside them all, for floats above 1 but nowhere above DARKEST_0_255_MAX (no
    guess), for integers that are all 0 or 1, for NaN or inf and for non-numbers."""
    dtype = samples.dtype
    if dtype == np.uint8:
        return 0, 255
    integer = np.issubdtype(dtype, np.integer)
    if not (integer or np.issubdtype(dtype, np.floating)):
        raise ValueError(f"{where} must hold pixel values ({PIXEL_RANGES}), got dtype {dtype}")
    if not integer and not np.isfinite(samples).all():
        raise ValueError(f"{where} hold NaN or inf values: the generator diverged, or the array is damaged")
    low, high = samples.min().item(), samples.max().item()
    found = f"{where} hold {dtype} values in [{low:.4g}, {high:.4g}]"
    return (_integer_range if integer else _float_range)(low, high, found)


def _integer_range(low, high, found):
    if low < 0 or high > 255:
        raise _outside(found)
    if high <= 1:
        raise ValueError(f"{found}: integers are read as [0, 255]; multiply them by 255, or save floats in [0, 1]")
    return 0, 255


def _float_range(low, high, found):
    if low < -1 or high > 255 or (low < 0 and high > 1):
        raise _outside(found)
    if low < 0:
        return -1, 1
    if high <= 1:
        return 0, 1
    if high <= DARKEST_0_255_MAX:
        raise ValueError(f"{found}: [0, 1] overshot, or a nearly black [0, 255]? clip them to [0, 1], or save "
                         "uint8 in [0, 255]")
    return 0, 255


def _outside(found):
    return ValueError(f"{found}, outside every pixel range ({PIXEL_RANGES}): rescale or clip them")


def list_images(folder):
    """The image files directly in ``folder``, sorted by name (folders and FIFOs named *.png are not files)."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.suffix.lower()[1:] in IMAGE_EXTENSIONS and p.is_file())


def npz_keys(path):
    """The array names in an .npz; ValueError when it cannot be read."""
    try:
        with np.load(path) as data:
            return list(data.files)
    except _NPZ_ERRORS as err:
        raise ValueError(f"cannot read {path} ({type(err).__name__}: {err}): the file is truncated or not "
                         "an .npz; write it again") from err


def sample_key(path):
    """The key of the samples in an .npz: 'samples', else its first array; refuses FID statistics."""
    keys = npz_keys(path)
    stats = [key for key in STATS_KEYS if key in keys]
    if len(stats) == len(STATS_KEYS):
        raise ValueError(f"{path} holds FID statistics (mu, sigma), not images: give a folder of images "
                         "or a sample array")
    if stats:
        other = next(key for key in STATS_KEYS if key not in keys)
        raise ValueError(f"{path} has {stats[0]} but no {other}: FID statistics need both "
                         "(np.savez(path, mu=mu, sigma=sigma))")
    if not keys:
        raise ValueError(f"{path} holds no arrays: save the samples with np.savez(path, samples=images)")
    return SAMPLES_KEY if SAMPLES_KEY in keys else keys[0]


def load_sample_array(path):
    """The sample array in a .npy or .npz file ('samples', else the first array), memory-mapped
    when stored uncompressed, or in the samples.npz of a sample folder given as ``path``.  The
    samples.npz of a sample folder must be whole (its manifest)."""
    path = sample_source(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder without {outputs.NPZ_NAME}: give a .npy/.npz sample array, or a "
                         "folder that test_ddgan.py --num_samples wrote")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a .npy/.npz sample array")
    if path.suffix.lower() != ".npz":
        return _read_array(path, lambda: np.load(path, mmap_mode="r"))
    key = sample_key(path)
    samples = _read_array(path, lambda: _memmap_member(path, key + ".npy"))
    if samples is None:
        samples = _read_array(path, lambda: np.load(path)[key])
    if key != SAMPLES_KEY and samples.ndim != 4:
        raise ValueError(f"{path} holds the arrays {', '.join(npz_keys(path))}: neither FID statistics (keys "
                         f"mu and sigma) nor samples (key '{SAMPLES_KEY}', (N, H, W, C) pixels)")
    if path.name == outputs.NPZ_NAME:
        names = [file.name for file in list_images(path.parent)]
        outputs.check_sample_folder(path.parent, image_names=names, rows=samples.shape[0] if samples.ndim else 0)
    return samples


def _read_array(path, read):
    try:
        return read()
    except _NPZ_ERRORS as err:
        raise ValueError(f"cannot read samples from {path} ({type(err).__name__}: {err}): the file is "
                         "truncated or damaged; save them again with np.save/np.savez") from err


def _memmap_member(path, name):
    """A read-only memory map of array ``name`` when the .npz stores it uncompressed, else None."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as handle:
        handle.seek(info.header_offset + 26)  # the local header: name and extra-field lengths
        name_length, extra_length = struct.unpack("<HH", handle.read(4))
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        if version not in ((1, 0), (2, 0)):
            return None
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
    if dtype.hasobject or 0 in shape:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def open_images(path):
    """A Dataset of (3, H, W) images in [0, 1] from a folder of images or a .npy/.npz sample array."""
    path = Path(path)
    if path.is_dir():
        return _open_folder(path)
    if path.is_file() and path.suffix.lower() in ARRAY_SUFFIXES:
        return _open_array(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a folder of images or a .npy/.npz sample array")
    raise ValueError(f"{path} is neither a folder of images nor a .npy/.npz sample array")


def sample_source(path):
    """PATH/samples.npz when PATH is a folder holding one (the same images as its PNGs, read faster),
    else PATH itself (a folder of images or a sample array file)."""
    packed = Path(path) / outputs.NPZ_NAME
    return packed if packed.is_file() else Path(path)


def _open_folder(folder):
    files = list_images(folder)
    outputs.check_sample_folder(folder, image_names=[file.name for file in files])
    if not files:
        raise ValueError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {folder}: "
                         "give a folder that holds the images")
    return ImagePathDataset(files, transforms=image_to_tensor)


def _open_array(path):
    return SampleArrayDataset(load_sample_array(path), where=str(path))


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
    the result is the (N, D) float64 array, or the tuple of them.  The outputs stay on the
    device until the end and batches are copied from pinned memory without waiting, so the
    host prepares the next batch while a GPU computes (no host-device sync per batch).
    """
    if len(dataset) == 0:
        raise ValueError("no images to evaluate")
    if isinstance(dataset, SampleArrayDataset):
        num_workers = 0  # already in memory: loader processes would only copy it
    cuda = torch.device(device).type == "cuda"
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=stack_images, pin_memory=cuda)
    parts = []
    with torch.no_grad():
        for batch in tqdm(loader, disable=None, unit="batch", leave=False):
            out = fn(batch.to(device, non_blocking=cuda))
            single = not isinstance(out, tuple)
            parts.append([t.float() for t in ((out,) if single else out)])
    arrays = tuple(torch.cat(column).cpu().numpy().astype(np.float64) for column in zip(*parts, strict=True))
    return arrays[0] if single else arrays
