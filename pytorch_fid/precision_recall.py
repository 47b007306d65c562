"""Improved precision and recall (k = 3) of generated against real images: the command line over
``metrics`` (computed in metrics.scores).

    python -m pytorch_fid.precision_recall REAL FAKE        # folders or .npy/.npz sample arrays

The features are the FID Inception-v3's pool3 (2048-d), extracted as for FID.
"""

from metrics import Evaluator
from metrics.images import open_images
from metrics.registry import METRICS, Options, check_count
from pytorch_fid.cli import add_network_flags
from utils.argtypes import ArgumentParser, positive_int
from utils.files import user_errors


def build_parser():
    parser = ArgumentParser(prog="python -m pytorch_fid.precision_recall",
                            description="Improved precision and recall of FAKE against REAL images.")
    parser.add_argument("real", help="real images: a folder or a .npy/.npz sample array")
    parser.add_argument("fake", help="generated images: a folder or a .npy/.npz sample array")
    parser.add_argument("--k", type=positive_int, default=3, help="neighbourhood size (default: 3)")
    parser.add_argument("--nn-batch-size", "--nn_batch_size", dest="nn_batch_size", type=positive_int,
                        default=5000, help="rows per block of pairwise distances (default: 5000)")
    add_network_flags(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    with user_errors(parser.prog):
        fake = open_images(args.fake)
        check_count([METRICS["pr"]], len(fake), Options(k=args.k), "FAKE images")
        evaluator = Evaluator(["pr"], device=args.device, real=args.real, inception_weights=args.weights,
                              weights_flag="--weights", random_weights=args.random_weights, batch_size=args.batch_size,
                              num_workers=args.num_workers, k=args.k, nn_batch_size=args.nn_batch_size)
        result = evaluator.evaluate(fake)
    print(f"Precision: {result['precision']:.4f}")
    print(f"Recall: {result['recall']:.4f}")


if __name__ == "__main__":
    main()
