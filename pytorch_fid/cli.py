"""What the FID, Inception Score and precision/recall command lines share: the network flags."""

import os

from metrics.inception import FID_WEIGHTS_NAME, WEIGHTS_ENV_VARS
from utils.argtypes import device, nonneg_int, positive_int


def default_workers():
    """As pytorch-fid: one loader process per usable core, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 8)


def add_network_flags(parser):
    """--batch-size --num-workers --device --weights --random-weights (underscore spellings accepted)."""
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=positive_int, default=50,
                        help="images per forward pass (default: 50)")
    parser.add_argument("--num-workers", "--num_workers", dest="num_workers", type=nonneg_int,
                        default=default_workers(), help="image loading processes (default: cores, at most 8)")
    parser.add_argument("--device", type=device, default="auto",
                        help="auto (cuda when available), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--weights", metavar="PATH",
                        help=f"the FID Inception weights {FID_WEIGHTS_NAME} (default: "
                             f"${WEIGHTS_ENV_VARS[0]}, ${WEIGHTS_ENV_VARS[1]}, then the torch hub "
                             "checkpoint folder, then a download)")
    parser.add_argument("--random-weights", "--random_weights", dest="random_weights", action="store_true",
                        help="testing aid: a fixed random network instead of the weights; "
                             "the scores are meaningless")
