"""What the FID, Inception Score and precision/recall command lines share: the network
flags, building the network from them, and one-line errors with a non-zero exit."""

import argparse
import os
import sys
from contextlib import contextmanager

import torch

from pytorch_fid.inception import FID_WEIGHTS_NAME, WEIGHTS_ENV_VARS, InceptionV3
from utils.argtypes import device as device_type


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def default_workers():
    """As pytorch-fid: one loader process per usable core, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 8)


def add_network_flags(parser):
    """--batch-size --num-workers --device --weights --random-weights (underscore spellings accepted)."""
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=positive_int, default=50,
                        help="images per forward pass (default: 50)")
    parser.add_argument("--num-workers", "--num_workers", dest="num_workers", type=non_negative_int,
                        default=default_workers(), help="image loading processes (default: cores, at most 8)")
    parser.add_argument("--device", type=device_type, default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--weights", metavar="PATH",
                        help=f"the FID Inception weights {FID_WEIGHTS_NAME} (default: "
                             f"${WEIGHTS_ENV_VARS[0]}, ${WEIGHTS_ENV_VARS[1]}, then the torch hub "
                             "checkpoint folder, then a download)")
    parser.add_argument("--random-weights", "--random_weights", dest="random_weights", action="store_true",
                        help="testing aid: a fixed random network instead of the weights; "
                             "the scores are meaningless")


def warn_if_random(args):
    if args.random_weights:
        print("warning: --random-weights: random Inception network, the scores are meaningless",
              file=sys.stderr)


def build_inception(args, blocks=(InceptionV3.DEFAULT_BLOCK_INDEX,)):
    """The InceptionV3 the flags ask for, on args.device."""
    warn_if_random(args)
    return InceptionV3(blocks, weights=args.weights, random_weights=args.random_weights).to(args.device)


@contextmanager
def user_errors(prog):
    """Report what a user can fix (missing or unreadable files, bad values) as one line, exit status 1.

    A DataLoader worker's error comes back with the worker's traceback in its message; only
    the last line of that (the original error) is shown.
    """
    try:
        yield
    except (OSError, ValueError) as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]
        message = lines[-1].removeprefix(f"{type(err).__name__}: ")
        raise SystemExit(f"{prog}: error: {message}") from None
