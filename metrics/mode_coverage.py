"""Mode coverage of stacked-digit samples, and the MNIST classifier it needs, from the command line.

    python -m metrics.mode_coverage --train_mnist DATADIR [--mode_classifier FILE]   # DATADIR/MNIST/raw
    python -m metrics.mode_coverage --samples samples.npz [--dataset stackmnist] [--mode_classifier FILE]
    python -m metrics.mode_coverage [--dataset stackmnist]     # the classifier's accuracy on unseen digits

The samples are scored by the ``Evaluator`` (the "modes" metric, as while training and in
test_ddgan.py); the classifiers are ``metrics.classifiers``, the counting ``metrics.scores``.
"""

import time

from metrics.classifiers import (
    MNIST_SIDE,
    as_images,
    check_classifier_target,
    default_classifier_path,
    reader_for,
    save_classifier,
    train_mnist_classifier,
)
from metrics.evaluator import Evaluator
from metrics.images import load_sample_array
from metrics.scores import NUM_MODES
from utils.argtypes import ArgumentParser
from utils.files import user_errors


def evaluate_mode_coverage(images, dataset, classifier_path=None):
    """Modes covered and reverse KL of generated stacked images, through the Evaluator.

    images: uint8 in [0, 255] or float in [-1, 1], [0, 1] or [0, 255], (N, 3, H, W) or (N, H, W, 3).
    Returns dict(modes, kl, num_samples, classifier_accuracy).
    """
    images = (as_images(images) + 1) / 2  # checked before a classifier is loaded or trained
    evaluator = Evaluator(["modes"], device="cpu", dataset=dataset, mode_classifier=classifier_path)
    return {**evaluator.evaluate(images), "num_samples": len(images), "classifier_accuracy": evaluator.digit_accuracy}


def build_parser():
    parser = ArgumentParser(prog="python -m metrics.mode_coverage",
                            description="Mode coverage of stacked-digit samples; digit classifiers.")
    add = parser.add_argument
    add("--dataset", default="stacked_digits", choices=("stacked_digits", "stackmnist"))
    add("--mode_classifier", help="classifier file (default: the cache, where --train_mnist saves)")
    add("--samples", help=".npy / .npz ('samples', else the first array) of images, or a sample folder; pixels "
        "uint8 [0, 255], or float [-1, 1], [0, 1] or [0, 255]")
    add("--train_mnist", metavar="ROOT", help="train the MNIST classifier on ROOT/MNIST/raw (a few minutes on "
        "one CPU core) and save it as --mode_classifier, default the cache that stackmnist reads")
    return parser


def _train_mnist(root, path):
    """--train_mnist: train the MNIST classifier on ``root`` and save it to ``path``."""
    check_classifier_target(path)
    start = time.perf_counter()
    model, accuracy_value = train_mnist_classifier(root)
    save_classifier(path, model, MNIST_SIDE, accuracy_value)
    print(f"MNIST classifier: accuracy {accuracy_value:.4f} on the t10k digits, trained in "
          f"{time.perf_counter() - start:.0f} s; saved to {path}")


def _run(args):
    if args.train_mnist:
        _train_mnist(args.train_mnist, args.mode_classifier or default_classifier_path("stackmnist"))
    if args.samples:
        result = evaluate_mode_coverage(load_sample_array(args.samples), args.dataset, args.mode_classifier)
        print(f"modes {result['modes']}/{NUM_MODES}, reverse KL {result['kl']:.4f}, "
              f"{result['num_samples']} samples")
    elif not args.train_mnist:
        _, accuracy_value = reader_for(args.dataset, args.mode_classifier)
        known = "not recorded in the file" if accuracy_value is None else f"{accuracy_value:.4f}"
        print(f"classifier accuracy on unseen digits: {known}")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    with user_errors(parser.prog):
        _run(args)


if __name__ == "__main__":
    main()
