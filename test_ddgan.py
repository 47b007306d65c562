"""Sample from a trained DDGAN generator and evaluate it.

    python test_ddgan.py --dataset cifar10 --exp ddgan_cifar10_exp1 --epoch_id 1200            # one grid
    python test_ddgan.py ... --num_samples 50000                  # PNG files + samples.npz
    python test_ddgan.py ... --compute_fid --real_img_dir DIR     # FID (also --compute_pr)
    python test_ddgan.py --dataset stacked_digits ... --mode_coverage
    python test_ddgan.py ... --measure_time

The generator file is netG_{epoch_id}.pth of the run folder, or --checkpoint.  Files
written by train_ddgan.py carry their model configuration; the reference's files do
not, and then the model flags on the command line describe the network.  The metric
packages (pytorch_fid, datasets_prep) are imported when a metric is asked for: they pull in
torchvision, which would add seconds to every start.
"""

import argparse
import os
import sys
from contextlib import contextmanager
from types import SimpleNamespace

from utils import checkpoint, sampling
from utils.flags import MODEL_KEYS, add_common_flags, add_model_flags, add_performance_flags, check_model_flags
from utils.test_flags import add_test_flags, resolve_test_flags

REPO = os.path.dirname(os.path.abspath(__file__))
FID_STATS_DIR = os.path.join(REPO, "pytorch_fid", "fid_stats")
FID_DIMS = 2048


def build_parser():
    parser = argparse.ArgumentParser(description="Sample from a DDGAN generator; FID, precision/recall, "
                                                 "mode coverage and sampling time.")
    add_common_flags(parser)
    add_model_flags(parser)
    add_test_flags(parser)
    add_performance_flags(parser)
    return parser


def parse_args(argv=None):
    """Parsed flags; ``args.explicit`` names the model flags that were given on the command line."""
    parser = build_parser()
    unset = object()
    args = parser.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(MODEL_KEYS, unset)))
    args.explicit = tuple(key for key in MODEL_KEYS if getattr(args, key) is not unset)
    for key in MODEL_KEYS:
        if getattr(args, key) is unset:
            setattr(args, key, parser.get_default(key))
    try:
        resolve_test_flags(args)
        check_model_flags(args)
    except ValueError as err:
        parser.error(str(err))
    return args


def load_sampler(args):
    """The generator of ``args.checkpoint`` wrapped in a Sampler on ``args.device``."""
    generator, config = checkpoint.load_generator(args.checkpoint, args.device, args, args.explicit)
    print(f"loaded {args.checkpoint} ({config['image_size']} px, T = {config['num_timesteps']})")
    return sampling.Sampler(generator, config, args.device, amp=args.amp, channels_last=args.channels_last,
                            compile=args.compile)


def default_fid_stats(dataset):
    """Where FID statistics of a data set are looked for when --real_img_dir is not given."""
    return os.path.join(FID_STATS_DIR, f"{dataset}_stats.npz")


def real_path(args):
    """--real_img_dir, else the data set's statistics file; it must exist."""
    path = args.real_img_dir or default_fid_stats(args.dataset)
    if not os.path.exists(path):
        hint = "check --real_img_dir" if args.real_img_dir else (
            f"make it with `python -m pytorch_fid.fid_score --save-stats REAL_IMAGE_DIR {path}` "
            "or pass --real_img_dir")
        raise EvaluationError(f"real images / FID statistics not found: {path} ({hint})")
    return path


class EvaluationError(ValueError):
    """A metric that cannot be computed with the given inputs."""


@contextmanager
def metric_errors():
    """pytorch_fid reports bad inputs (empty folder, unreadable image) as ValueError; from a
    DataLoader worker the message carries the worker's traceback: keep its last line."""
    try:
        yield
    except ValueError as err:
        raise EvaluationError(str(err).strip().splitlines()[-1]) from err


def build_inception(args):
    """The FID Inception-v3 (pool3 features) on args.device; raises if its weights file is missing."""
    from pytorch_fid.inception import InceptionV3

    blocks = [InceptionV3.BLOCK_INDEX_BY_DIM[FID_DIMS]]
    return InceptionV3(blocks, weights=args.inception_weights).to(args.device)


def features_of(images, model, args):
    """(N, 2048) pool3 features of a Dataset of images or a list of image files."""
    from pytorch_fid.fid_score import get_activations

    return get_activations(images, model, args.fid_batch_size, FID_DIMS, args.device, args.num_workers)


def prepare_inception(args):
    """The Inception network and the real side (FID statistics, features for precision/recall).

    Runs before sampling, so a missing weights file or real folder fails in seconds.
    """
    from pytorch_fid.data import open_images
    from pytorch_fid.fid_score import activation_statistics, is_stats_file, load_statistics

    path = real_path(args)
    if is_stats_file(path):
        if args.compute_pr:
            raise EvaluationError(f"--compute_pr needs real images, but {path} holds FID statistics: "
                                  "pass a folder of images or a samples .npz as --real_img_dir")
        return SimpleNamespace(model=build_inception(args), stats=load_statistics(path), features=None)
    real = open_images(path)
    model = build_inception(args)
    features = features_of(real, model, args)
    return SimpleNamespace(model=model, features=features,
                           stats=activation_statistics(features) if args.compute_fid else None)


def report_inception(real, paths, args):
    """FID and/or precision-recall of the sample files ``paths`` against ``real``."""
    from pytorch_fid.fid_score import activation_statistics, calculate_frechet_distance
    from pytorch_fid.precision_recall import compute_precision_recall

    features = features_of(paths, real.model, args)
    if args.compute_fid:
        print(f"FID = {calculate_frechet_distance(*activation_statistics(features), *real.stats)}")
    if args.compute_pr:
        precision, recall = compute_precision_recall(real.features, features, k=3, device=args.device)
        print(f"precision = {precision:.4f}, recall = {recall:.4f} (k = 3)")


def prepare_mode_reader(args):
    """The digit reader of --mode_coverage (loaded, or trained once and cached, before sampling)."""
    from datasets_prep import DataError
    from datasets_prep.mode_coverage import reader_for

    try:
        reader, accuracy = reader_for(args.dataset, args.mode_classifier)
    except DataError as err:
        raise EvaluationError(str(err)) from None
    if accuracy is not None:
        print(f"digit classifier accuracy (its own test digits): {accuracy:.4f}")
    return reader


def report_mode_coverage(reader, sampler, args):
    from datasets_prep.mode_coverage import NUM_MODES, classify_stacked, mode_coverage

    images = sampling.sample_array(sampler, args.num_mode_samples, args.batch_size, args.seed)
    modes, reverse_kl = mode_coverage(classify_stacked(images, reader))
    print(f"modes covered = {modes} / {NUM_MODES}, reverse KL = {reverse_kl:.4f} ({len(images)} samples)")


def report_time(sampler, args):
    mean, std = sampling.time_sampling(sampler, args.batch_size, args.time_repeats, args.time_warmup)
    print(f"sampling time: {mean:.4f} +/- {std:.4f} s per batch of {args.batch_size} "
          f"({args.device.type}, {args.time_repeats} repeats after {args.time_warmup} warm-up)")


def report_grid(sampler, args):
    path = os.path.join(args.output_dir, f"samples_{args.dataset}.png")
    sampling.save_grid(sampler, args.batch_size, args.seed, path)
    print(f"wrote {path}")


def write_samples(sampler, args):
    """--num_samples PNG files and samples.npz in --sample_dir; returns the PNG paths."""
    npz = sampling.write_samples(sampler, args.sample_dir, args.num_samples, args.batch_size, args.seed)
    print(f"wrote {args.num_samples} samples to {args.sample_dir} ({{index}}.png and {npz}); "
          f"Inception Score: python ./pytorch_fid/inception_score.py --sample_dir {args.sample_dir}")
    return sampling.png_paths(args.sample_dir, args.num_samples)


def run(args):
    sampler = load_sampler(args)
    if args.measure_time:
        report_time(sampler, args)
        return
    inception = None
    if args.compute_fid or args.compute_pr:
        with metric_errors():
            inception = prepare_inception(args)
    reader = prepare_mode_reader(args) if args.mode_coverage else None
    if args.write_samples:
        paths = write_samples(sampler, args)
        if inception is not None:
            with metric_errors():
                report_inception(inception, paths, args)
    if reader is not None:
        report_mode_coverage(reader, sampler, args)
    if not (args.write_samples or args.mode_coverage):
        report_grid(sampler, args)


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except (checkpoint.CheckpointError, EvaluationError, OSError) as err:
        sys.exit(f"test_ddgan.py: error: {err}")


if __name__ == "__main__":
    main()
