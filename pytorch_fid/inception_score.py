"""Inception Score of generated samples: the command line over ``metrics`` (the score is computed there).

    python ./pytorch_fid/inception_score.py --sample_dir DIR     (or python -m pytorch_fid.inception_score)

DIR/samples.npz holds the samples as one (N, H, W, 3) array of pixel values in [0, 255]
(key 'samples', else the first array); --sample_dir may also name a .npy/.npz file or a
folder of images.  A sample folder left unfinished by test_ddgan.py, or mixed with other
images, is refused.  The classifier is the FID Inception-v3; p(y|x) is the softmax over its
first 1000 logits (of 1008), over --splits parts (see metrics.scores).  Published
scores use 50k samples and 10 splits.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the packages from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from metrics import Evaluator  # noqa: E402
from metrics.images import open_images, sample_source  # noqa: E402
from metrics.registry import METRICS, Options, check_count  # noqa: E402
from pytorch_fid.cli import add_network_flags  # noqa: E402
from utils.argtypes import ArgumentParser, positive_int
from utils.files import user_errors  # noqa: E402

PUBLISHED_SAMPLES = 50_000


def build_parser():
    parser = ArgumentParser(prog="inception_score", description=__doc__.split("\n\n")[0])
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
        check_count([METRICS["is"]], len(images), Options(splits=args.splits))
        evaluator = Evaluator(["is"], device=args.device, inception_weights=args.weights, weights_flag="--weights",
                              random_weights=args.random_weights, batch_size=args.batch_size,
                              num_workers=args.num_workers, splits=args.splits)
        result = evaluator.evaluate(images)
    if len(images) != PUBLISHED_SAMPLES:  # after the score, so that an error stays the one line on stderr
        print(f"note: {len(images)} samples; published scores use {PUBLISHED_SAMPLES}", file=sys.stderr)
    print(evaluator.summaries(result)[0])


if __name__ == "__main__":
    main()
