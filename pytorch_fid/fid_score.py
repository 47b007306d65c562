"""Fréchet Inception Distance, with the interface and command line of pytorch-fid.

    python -m pytorch_fid.fid_score PATH1 PATH2                  # prints "FID:  <value>"
    python -m pytorch_fid.fid_score --save-stats SOURCE STATS.npz

A PATH is a folder of images, a .npy/.npz sample array (see ``pytorch_fid.data``), or an
.npz of precomputed statistics (arrays mu and sigma).  The features are the pool3
activations of the FID Inception-v3 (``--dims`` picks an earlier block).
"""

import warnings
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from scipy import linalg
from torch.utils.data import Dataset

from pytorch_fid.cli import add_network_flags, user_errors
from pytorch_fid.data import (
    IMAGE_EXTENSIONS,
    STATS_KEYS,
    ImagePathDataset,
    image_to_tensor,
    map_batches,
    npz_keys,
    open_images,
)
from pytorch_fid.inception import InceptionV3
from utils import outputs
from utils.argtypes import ArgumentParser
from utils.checkpoint import atomic_write

__all__ = [
    "IMAGE_EXTENSIONS", "ImagePathDataset", "activation_statistics", "build_parser",
    "calculate_activation_statistics", "calculate_fid_given_paths", "calculate_frechet_distance",
    "compute_statistics_of_path", "fid_inception", "get_activations", "is_stats_file", "load_statistics",
    "main", "parser", "save_fid_stats",
]


def get_activations(files, model, batch_size=50, dims=2048, device="cpu", num_workers=1):
    """(N, dims) float64 features: the first block ``model`` returns, average-pooled to 1x1.

    files: image paths, or a Dataset of (3, H, W) images in [0, 1] (e.g. ``open_images``).
    """
    model.eval()
    dataset = files if isinstance(files, Dataset) else ImagePathDataset(files, transforms=image_to_tensor)
    activations = map_batches(lambda batch: _pooled(model(batch)[0]), dataset, batch_size, device,
                              num_workers)
    if activations.shape[1] != dims:
        raise ValueError(f"the model gives {activations.shape[1]}-d features, not dims={dims}: build it as "
                         f"InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[{dims}]])")
    return activations


def _pooled(features):
    """(B, C, h, w) -> (B, C), averaging space when the block is not already pooled."""
    if features.shape[2:] != (1, 1):
        features = F.adaptive_avg_pool2d(features, (1, 1))
    return features.flatten(1)


def calculate_activation_statistics(files, model, batch_size=50, dims=2048, device="cpu", num_workers=1):
    """(mu (dims,), sigma (dims, dims)) of the features of ``files`` (as in ``get_activations``)."""
    return activation_statistics(get_activations(files, model, batch_size, dims, device, num_workers))


def activation_statistics(activations):
    """Mean and covariance (rows are samples) of (N, D) activations, N >= 2."""
    if len(activations) < 2:
        raise ValueError(f"FID statistics need at least 2 images, got {len(activations)}")
    return np.mean(activations, axis=0), np.cov(activations, rowvar=False)


def is_stats_file(path):
    """Whether ``path`` is an .npz holding FID statistics (mu and sigma)."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        return set(STATS_KEYS) <= set(npz_keys(path))
    except ValueError:
        return False


def load_statistics(path):
    """(mu (D,), sigma (D, D)) of a statistics .npz; ValueError when they are not a finite mean and covariance."""
    with np.load(path) as data:
        mu, sigma = data["mu"], data["sigma"]
    check_statistics(mu, sigma, path)
    return mu, sigma


def check_statistics(mu, sigma, where="the statistics"):
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f"{where}: mu must be (D,) and sigma (D, D), got {mu.shape} and {sigma.shape}; "
                         "compute the statistics again")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{where}: mu or sigma holds NaN or inf values: compute the statistics again "
                         "from finite images")


def _open(path):
    """(mu, sigma) from a statistics file, else the Dataset of images at ``path``."""
    return load_statistics(path) if is_stats_file(path) else open_images(path)


def _check_source(path):
    """Open ``path`` as ``_open`` does and check there are images enough for statistics (no network)."""
    source = _open(path)
    if not isinstance(source, tuple) and len(source) < 2:
        raise ValueError(f"FID statistics need at least 2 images, {path} has {len(source)}")
    return source


def _statistics(source, model, batch_size, dims, device, num_workers):
    if isinstance(source, tuple):
        return source
    return calculate_activation_statistics(source, model, batch_size, dims, device, num_workers)


def compute_statistics_of_path(path, model, batch_size, dims, device, num_workers=1):
    """(mu, sigma) of a statistics .npz, a folder of images or a sample array file."""
    return _statistics(_open(path), model, batch_size, dims, device, num_workers)


def calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), the Fréchet distance of two Gaussians.

    As in pytorch-fid: when the matrix square root is not finite (singular product), eps is
    added to both diagonals; its imaginary part (round-off) is dropped unless its diagonal
    exceeds 1e-3.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape:
        raise ValueError(f"the statistics have different dimensions ({mu1.size} vs {mu2.size}): "
                         "compute both with the same --dims")
    check_statistics(mu1, sigma1, "the first statistics")
    check_statistics(mu2, sigma2, "the second statistics")
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(mu1.size) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.abs(covmean.imag).max():.3g} in the matrix square "
                             "root: the covariances are not valid (too few images for --dims?)")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _sqrtm(matrix):
    """scipy's sqrtm without its singular-matrix warning (the caller handles that case)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(matrix)


def fid_inception(dims=2048, weights=None, random_weights=False):
    """The InceptionV3 whose output block has ``dims`` channels."""
    if dims not in InceptionV3.BLOCK_INDEX_BY_DIM:
        raise ValueError(f"dims must be one of {sorted(InceptionV3.BLOCK_INDEX_BY_DIM)}, got {dims}")
    return InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]], weights=weights, random_weights=random_weights)


def calculate_fid_given_paths(paths, batch_size, device, dims, num_workers=1, weights=None,
                              random_weights=False):
    """FID between two paths (folders, sample arrays or statistics files), each through
    ``compute_statistics_of_path``.

    Both are checked before any network runs; no network is built when both are statistics.
    """
    for path in paths:
        _check_source(path)
    model = None
    if not all(is_stats_file(path) for path in paths):
        model = fid_inception(dims, weights, random_weights).to(device)
    (mu1, sigma1), (mu2, sigma2) = (compute_statistics_of_path(path, model, batch_size, dims, device, num_workers)
                                    for path in paths)
    return calculate_frechet_distance(mu1, sigma1, mu2, sigma2)


def stats_target(path):
    """The file np.savez writes for ``path``: ".npz" is added unless the name ends in it."""
    path = str(path)
    return path if path.endswith(".npz") else path + ".npz"


def save_fid_stats(paths, batch_size, device, dims, num_workers=1, weights=None, random_weights=False):
    """Compute the statistics of paths[0] and save them as mu, sigma in the .npz paths[1] (suffix added
    as numpy does); an existing file is never replaced."""
    source, target = paths[0], stats_target(paths[1])
    images = _check_source(source)
    for path in dict.fromkeys([str(paths[1]), target]):  # as upstream, the name given must not exist either
        outputs.check_output_file(path, "the statistics file")
    model = None if isinstance(images, tuple) else fid_inception(dims, weights, random_weights).to(device)
    mu, sigma = compute_statistics_of_path(source, model, batch_size, dims, device, num_workers)
    atomic_write(target, lambda handle: np.savez_compressed(handle, mu=mu, sigma=sigma))


def build_parser():
    parser = ArgumentParser(
        prog="python -m pytorch_fid.fid_score",
        description="Fréchet Inception Distance between two folders of images, .npy/.npz sample arrays "
                    "or .npz statistics files.")
    add_network_flags(parser)
    parser.add_argument("--dims", type=int, default=2048, choices=sorted(InceptionV3.BLOCK_INDEX_BY_DIM),
                        help="feature dimensions: the Inception block to use (default: 2048, pool3)")
    parser.add_argument("--save-stats", "--save_stats", dest="save_stats", action="store_true",
                        help="compute the statistics of the first path and save them to the second (.npz, "
                             "added to the name if missing)")
    parser.add_argument("path", nargs=2,
                        help="two folders / .npy / .npz files (with --save-stats: source, target)")
    return parser


parser = build_parser()


def main(argv=None):
    args = parser.parse_args(argv)
    extractor = {"weights": args.weights, "random_weights": args.random_weights}
    with user_errors(parser.prog):
        if args.save_stats:
            save_fid_stats(args.path, args.batch_size, args.device, args.dims, args.num_workers, **extractor)
            return
        fid = calculate_fid_given_paths(args.path, args.batch_size, args.device, args.dims, args.num_workers,
                                        **extractor)
    print("FID: ", fid)


if __name__ == "__main__":
    main()
