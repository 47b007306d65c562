"""Fréchet Inception Distance, with the interface and command line of pytorch-fid (over ``metrics``).

    python -m pytorch_fid.fid_score PATH1 PATH2                  # prints "FID:  <value>"
    python -m pytorch_fid.fid_score --save-stats SOURCE STATS.npz

A PATH is a folder of images, a .npy/.npz sample array (see ``metrics.images``), or an
.npz of precomputed statistics (arrays mu and sigma).  The features are the pool3
activations of the FID Inception-v3 (``--dims`` picks an earlier block).  This module is the
pytorch-fid-shaped face of the ``metrics`` package: the names below are pytorch-fid's, the
command line goes through ``metrics.Evaluator``, and the numbers are computed in ``metrics``.
"""

from torch.utils.data import Dataset

from metrics import Evaluator
from metrics.evaluator import open_samples
from metrics.images import IMAGE_EXTENSIONS, ImagePathDataset, image_to_tensor, map_batches, open_images
from metrics.inception import InceptionV3, pooled
from metrics.scores import (
    activation_statistics,
    calculate_frechet_distance,
    is_stats_file,
    load_statistics,
    save_statistics,
    stats_target,
)
from pytorch_fid.cli import add_network_flags
from utils import files
from utils.argtypes import ArgumentParser

__all__ = [
    "IMAGE_EXTENSIONS", "ImagePathDataset", "build_parser", "calculate_activation_statistics",
    "calculate_fid_given_paths", "calculate_frechet_distance", "compute_statistics_of_path", "get_activations",
    "main", "parser", "save_fid_stats",
]


def get_activations(files, model, batch_size=50, dims=2048, device="cpu", num_workers=1):
    """(N, dims) float64 features: the first block ``model`` returns, average-pooled to 1x1.

    files: image paths, or a Dataset of (3, H, W) images in [0, 1] (e.g. ``metrics.images.open_images``).
    """
    model.eval()
    dataset = files if isinstance(files, Dataset) else ImagePathDataset(files, transforms=image_to_tensor)
    activations = map_batches(lambda batch: pooled(model(batch)[0]), dataset, batch_size, device, num_workers)
    if activations.shape[1] != dims:
        raise ValueError(f"the model gives {activations.shape[1]}-d features, not dims={dims}: build it as "
                         f"InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[{dims}]])")
    return activations


def calculate_activation_statistics(files, model, batch_size=50, dims=2048, device="cpu", num_workers=1):
    """(mu (dims,), sigma (dims, dims)) of the features of ``files`` (as in ``get_activations``)."""
    return activation_statistics(get_activations(files, model, batch_size, dims, device, num_workers))


def compute_statistics_of_path(path, model, batch_size, dims, device, num_workers=1):
    """(mu, sigma) of a statistics .npz, a folder of images or a sample array file."""
    if is_stats_file(path):
        return load_statistics(path)
    return calculate_activation_statistics(open_images(path), model, batch_size, dims, device, num_workers)


def _open_checked(path):
    """The samples at ``path`` as FID reads them (``metrics.evaluator.open_samples``), checked without a
    network: statistics loaded, images counted (FID needs 2)."""
    samples = open_samples(path)
    if not isinstance(samples, tuple) and len(samples) < 2:
        raise ValueError(f"FID statistics need at least 2 images, {path} has {len(samples)}")
    return samples


def _evaluator(real, batch_size, device, dims, num_workers, weights, random_weights, statistics_only=False):
    return Evaluator(["fid"], device=device, real=real, inception_weights=weights, weights_flag="--weights",
                     random_weights=random_weights, batch_size=batch_size, num_workers=num_workers, dims=dims,
                     statistics_only=statistics_only)


def calculate_fid_given_paths(paths, batch_size, device, dims, num_workers=1, weights=None, random_weights=False):
    """FID between two paths (folders, sample arrays or statistics files), in pytorch-fid's order.

    Both are checked before any network runs; no network is built when both are statistics."""
    samples = _open_checked(paths[0])  # before the second path's real-side statistics are computed
    evaluator = _evaluator(paths[1], batch_size, device, dims, num_workers, weights, random_weights,
                           statistics_only=isinstance(samples, tuple))
    return evaluator.evaluate_samples(samples)["fid"]


def save_fid_stats(paths, batch_size, device, dims, num_workers=1, weights=None, random_weights=False):
    """Compute the statistics of paths[0] and save them as mu, sigma in the .npz paths[1] (suffix added
    as numpy does); an existing file is never replaced."""
    source, target = paths[0], stats_target(paths[1])
    for path in dict.fromkeys([str(paths[1]), target]):  # as upstream, the name given must not exist either
        files.check_output_file(path, "the statistics file")
    evaluator = _evaluator(source, batch_size, device, dims, num_workers, weights, random_weights,
                           statistics_only=True)
    save_statistics(target, *evaluator.real.stats)


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
    with files.user_errors(parser.prog):
        if args.save_stats:
            save_fid_stats(args.path, args.batch_size, args.device, args.dims, args.num_workers, **extractor)
            return
        fid = calculate_fid_given_paths(args.path, args.batch_size, args.device, args.dims, args.num_workers,
                                        **extractor)
    print("FID: ", fid)


if __name__ == "__main__":
    main()
