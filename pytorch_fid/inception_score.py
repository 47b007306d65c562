"""Inception Score (Salimans et al., 2016) of generated samples.

    python ./pytorch_fid/inception_score.py --sample_dir DIR     (or python -m pytorch_fid.inception_score)

DIR/samples.npz holds the samples as one (N, H, W, 3) array of pixel values in [0, 255]
(key 'samples', else the first array); --sample_dir may also name a .npy/.npz file or a
folder of images.  The classifier is the FID Inception-v3; p(y|x) is the softmax over its
first 1000 logits (of 1008).  The samples are cut into --splits parts and the score of a part
is exp(mean over x of KL(p(y|x) || p(y))), p(y) the part's mean prediction; the mean and
standard deviation over parts are printed.  Published scores use 50k samples and 10 splits.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import special

if __package__ in (None, ""):  # run as a file: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from pytorch_fid.cli import add_network_flags, build_inception, positive_int, user_errors  # noqa: E402
from pytorch_fid.data import map_batches, open_images  # noqa: E402

NUM_CLASSES = 1000
PUBLISHED_SAMPLES = 50_000


def inception_score_from_logits(logits, splits=10):
    """(mean, std) over ``splits`` parts of the Inception Score of (N, C >= 1000) logits."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, classes), got shape {logits.shape}")
    check_sample_count(len(logits), splits)
    probs = special.softmax(logits[:, :NUM_CLASSES], axis=1)
    scores = [_split_score(part) for part in np.array_split(probs, splits)]
    return float(np.mean(scores)), float(np.std(scores))


def _split_score(probs):
    """exp(mean_x KL(p(y|x) || p(y))) for (n, classes) predictions p(y|x)."""
    marginal = probs.mean(axis=0, keepdims=True)
    return np.exp(special.rel_entr(probs, marginal).sum(axis=1).mean())


def check_sample_count(count, splits):
    if count < splits:
        raise ValueError(f"{count} samples cannot make {splits} splits: give more samples or lower --splits")


def get_logits(images, model, batch_size=50, device="cpu", num_workers=0):
    """(N, 1008) logits of the FID Inception-v3 for a Dataset of images."""
    return map_batches(lambda batch: model.features_and_logits(batch)[1], images, batch_size, device,
                       num_workers)


def sample_source(sample_dir):
    """DIR/samples.npz when it exists, else ``sample_dir`` itself (a folder of images or an array file)."""
    packed = Path(sample_dir) / "samples.npz"
    return packed if packed.is_file() else Path(sample_dir)


def build_parser():
    parser = argparse.ArgumentParser(prog="inception_score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample_dir", "--sample-dir", dest="sample_dir", required=True,
                        help="folder holding samples.npz (or images), or a .npy/.npz sample array")
    parser.add_argument("--splits", type=positive_int, default=10,
                        help="parts the samples are cut into (default: 10)")
    add_network_flags(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    with user_errors(parser.prog):
        images = open_images(sample_source(args.sample_dir))
        check_sample_count(len(images), args.splits)
        if len(images) != PUBLISHED_SAMPLES:
            print(f"note: {len(images)} samples; published scores use {PUBLISHED_SAMPLES}", file=sys.stderr)
        model = build_inception(args)
        logits = get_logits(images, model, args.batch_size, args.device, args.num_workers)
        mean, std = inception_score_from_logits(logits, args.splits)
    print(f"Inception Score = {mean:.4f} ± {std:.4f}")


if __name__ == "__main__":
    main()
