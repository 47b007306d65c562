"""Seeded, batched sampling from a DDGAN generator, and where the samples go.

Reproducibility: ``sample_batches`` calls ``torch.manual_seed(seed)`` once, then every
batch draws its x_T with ``torch.randn`` on the CPU (as the reference's test script did)
and runs ``sample_from_model`` on the device, which draws z and the posterior noise
there.  A checkpoint, a seed, a batch size and a device type therefore always give the
same images; the first batch equals the reference's ``sampling`` fixture.

Quantisation, the one of torchvision's ``save_image``: ``u8 = floor(clamp((x + 1) / 2, 0, 1)
* 255 + 0.5)``, i.e. round half up.  Samples are written losslessly (PNG, and the same
array in ``samples.npz``) so metrics see exactly these values.  The folder they go to, and
its manifest (whole or not, from which checkpoint), are described in ``utils.outputs``.
"""

import errno
import os
import queue
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from utils import outputs, performance
from utils.diffusion import Posterior_Coefficients, get_time_schedule, sample_from_model
from utils.files import atomic_write
from utils.flags import namespace
from utils.outputs import NPZ_NAME, PARTIAL_SUFFIX

PNG_COMPRESS_LEVEL = 1  # fastest zlib level; PNG stays lossless.


def to_unit(x):
    """(B, C, H, W) in [-1, 1] -> same shape clamped to [0, 1]."""
    return ((x + 1) / 2).clamp(0, 1)


def to_uint8(x):
    """(B, C, H, W) floats in [-1, 1] -> (B, H, W, C) uint8, rounded as save_image does."""
    return to_unit(x).mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


class Sampler:
    """The reverse chain of one generator: ``sampler(n)`` -> (n, C, H, W) images in [-1, 1]."""

    def __init__(self, generator, config, device, amp="none", channels_last=False, compile=False):
        """``amp``, ``channels_last``, ``compile``: the opt-in fast paths (utils.performance); on CUDA
        ``compile`` uses CUDA graphs for the fixed-shape steps."""
        self.device = torch.device(device)
        self.amp, self.channels_last = amp, channels_last
        mode = "reduce-overhead" if self.device.type == "cuda" else None
        generator = performance.prepare_model(generator, channels_last)
        self.generator = performance.maybe_compile(generator, compile, mode=mode)
        self.opt = namespace(config)
        self.coeff = Posterior_Coefficients(self.opt, self.device)
        self.times = get_time_schedule(self.opt, self.device)

    def noise(self, n):
        """x_T, (n, C, H, W), drawn on the CPU and moved to the device."""
        opt = self.opt
        return torch.randn(n, opt.num_channels, opt.image_size, opt.image_size).to(self.device)

    def chain(self, x_init):
        """Run the T generator steps from ``x_init`` (on the device)."""
        opt = self.opt
        x_init = performance.prepare_input(x_init, self.channels_last)
        with performance.autocast(self.amp, self.device):
            x = sample_from_model(self.coeff, self.generator, opt.num_timesteps, x_init, self.times, opt)
        return x.float()

    def __call__(self, n):
        return self.chain(self.noise(n))


def batch_sizes(total, batch_size):
    """[batch_size, ..., remainder]: sizes of the batches that make ``total`` samples."""
    return [batch_size] * (total // batch_size) + ([total % batch_size] if total % batch_size else [])


def sample_batches(sampler, num_samples, batch_size, seed, desc="sampling"):
    """Seed, then yield CPU uint8 (b, H, W, C) batches totalling ``num_samples``, with a progress bar."""
    torch.manual_seed(seed)
    with tqdm(total=num_samples, unit="img", desc=desc, dynamic_ncols=True) as bar:
        for size in batch_sizes(num_samples, batch_size):
            yield to_uint8(sampler(size)).cpu().numpy()
            bar.update(size)


def sample_array(sampler, num_samples, batch_size, seed):
    """All ``num_samples`` samples in memory: uint8 (N, H, W, C)."""
    return np.concatenate(list(sample_batches(sampler, num_samples, batch_size, seed)))


def write_grid(images, path):
    """(B, C, H, W) images in [-1, 1] (clamped) as a PNG grid, 8 per row, written atomically."""
    from torchvision.utils import save_image  # imported here: torchvision adds 1.5 s to every CLI start

    atomic_write(path, lambda f: save_image(to_unit(images), f, format="png"))


def save_grid(sampler, batch_size, seed, path):
    """One seeded batch as an image grid (8 per row) at ``path``."""
    torch.manual_seed(seed)
    write_grid(sampler(batch_size), path)


def time_sampling(sampler, batch_size, repeats, warmup):
    """Seconds to sample one batch from a fixed x_T: (mean, std) over ``repeats`` after ``warmup`` runs."""
    x_init = sampler.noise(batch_size)
    seconds = np.array(performance.time_calls(lambda: sampler.chain(x_init), sampler.device, warmup, repeats))
    return float(seconds.mean()), float(seconds.std())


class NpzStream:
    """Writes one uint8 array into ``{path}`` (an .npz, key ``key``) chunk by chunk, in order.

    The array's shape is declared up front; the file is assembled under a temporary name
    and renamed only when every row has arrived, so a crash never leaves a short array
    (nor an older file beside new PNGs: an existing ``path`` is removed first).
    """

    def __init__(self, path, shape, key="samples"):
        self.path, self.shape, self.rows = path, tuple(shape), 0
        if os.path.exists(path):
            os.remove(path)
        self.tmp = path + PARTIAL_SUFFIX
        self.zip = zipfile.ZipFile(self.tmp, "w", zipfile.ZIP_STORED)
        self.entry = self.zip.open(key + ".npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                  "shape": self.shape}
        np.lib.format.write_array_header_1_0(self.entry, header)

    def write(self, rows):
        self.entry.write(np.ascontiguousarray(rows, dtype=np.uint8).tobytes())
        self.rows += len(rows)

    def close(self, complete=True):
        """Finish the file; keep it only if ``complete``, every declared row was written and it closed cleanly."""
        try:
            self.entry.close()
            self.zip.close()
        except OSError:
            os.remove(self.tmp)
            raise
        if complete and self.rows == self.shape[0]:
            os.replace(self.tmp, self.path)
        else:
            os.remove(self.tmp)


def png_paths(folder, count, start=0):
    """The files ``{index}.png`` for index start..start+count-1 (what SampleWriter writes)."""
    return [os.path.join(folder, outputs.png_name(index)) for index in range(start, start + count)]


def _save_png(path, image):
    """uint8 (H, W, C) -> lossless PNG (grey for one channel)."""
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    picture.save(path, compress_level=PNG_COMPRESS_LEVEL)


class SampleWriter:
    """Background writer of uint8 (b, H, W, C) batches: ``{index}.png`` files and ``samples.npz``.

    ``put`` hands a batch to a worker thread through a bounded queue, so the device keeps
    sampling while files are written (PNG encoding runs on ``workers`` threads; zlib
    releases the GIL).  The first write error is raised by the next ``put`` or by ``close``.
    The folder's manifest says "incomplete" from the start (an earlier run's files are removed
    then) and "complete" only after ``close`` has every file; ``record`` (seed, checkpoint...)
    goes into it.
    """

    def __init__(self, folder, num_samples, image_shape, workers=4, max_pending=8, record=None):
        self.folder, self.num_samples, self.index, self.error = folder, num_samples, 0, None
        self.manifest = {"count": num_samples, "image_shape": list(image_shape), **(record or {})}
        try:
            os.makedirs(folder, exist_ok=True)
            outputs.write_manifest(folder, complete=False, **self.manifest)
            outputs.clear_samples(folder)
            self.npz = NpzStream(os.path.join(folder, NPZ_NAME), (num_samples, *image_shape))
        except OSError as err:
            self.error = err
            self._raise_error()
        self.pool = ThreadPoolExecutor(workers)
        self.queue = queue.Queue(max_pending)
        self.thread = threading.Thread(target=self._work, name="sample-writer", daemon=True)
        self.thread.start()

    def put(self, batch):
        self._raise_error()
        self.queue.put(batch)

    def _work(self):
        while (batch := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self._write(batch)
                except Exception as err:  # handed to the main thread by put/close
                    self.error = err

    def _write(self, batch):
        self.npz.write(batch)
        paths = png_paths(self.folder, len(batch), self.index)
        list(self.pool.map(_save_png, paths, batch))
        self.index += len(batch)

    def _raise_error(self):
        """The first write error as one OSError saying what the folder holds now."""
        if self.error is None:
            return
        npz = "samples.npz complete" if os.path.isfile(os.path.join(self.folder, NPZ_NAME)) else f"no {NPZ_NAME}"
        kept = (f"the first {self.index} of {self.num_samples} samples saved as PNG, {npz}, the folder not "
                "marked complete")
        if getattr(self.error, "errno", None) == errno.ENOSPC:
            raise OSError(f"disk full while writing samples to {self.folder} ({kept}): free space and "
                          "sample again") from self.error
        raise OSError(f"writing samples to {self.folder} failed: {self.error} ({kept})") from self.error

    def close(self):
        """Wait for every queued batch, finish samples.npz and the manifest; raise the first write error."""
        self._finish(complete=True)
        if self.error is None:
            try:
                outputs.write_manifest(self.folder, complete=True, **self.manifest)
            except OSError as err:
                self.error = err
        self._raise_error()

    def _finish(self, complete):
        self.queue.put(None)
        self.thread.join()
        self.pool.shutdown()
        try:
            self.npz.close(complete=complete and self.error is None)
        except OSError as err:
            self.error = self.error or err

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.close()
        else:
            self._finish(complete=False)


def write_samples(sampler, folder, num_samples, batch_size, seed, checkpoint=None):
    """Sample ``num_samples`` images into ``folder``; returns the path of samples.npz.

    The manifest records ``seed``, ``batch_size`` and the generator file ``checkpoint``.
    """
    opt = sampler.opt
    record = {"seed": seed, "batch_size": batch_size, "checkpoint": outputs.checkpoint_record(checkpoint)}
    shape = (opt.image_size, opt.image_size, opt.num_channels)
    with SampleWriter(folder, num_samples, shape, record=record) as writer:
        for batch in sample_batches(sampler, num_samples, batch_size, seed):
            writer.put(batch)
    return os.path.join(folder, NPZ_NAME)
