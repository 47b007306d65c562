"""The metric flags both scripts share: which metrics, the real side, the networks' files.

``--metrics`` is a list of registry names (``"fid,pr"`` on the command line) in both scripts:
while training, of the generator every ``--metrics_every`` epochs; in test_ddgan.py, of the
written samples.
"""

import argparse

from metrics.errors import MetricError
from metrics.registry import parse_metric_names


def metric_names(text):
    """argparse type of --metrics: "fid,is" -> ["fid", "is"] (an empty text: none)."""
    if not text.strip():
        return []
    try:
        return parse_metric_names(text)
    except MetricError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_metric_flags(parser):
    """--metrics, --real_img_dir, --inception_weights, --mode_classifier."""
    g = parser.add_argument_group("metrics")
    g.add_argument("--metrics", type=metric_names, default=[], metavar="NAMES",
                   help="comma-separated metrics: fid, is, pr, modes (default: none).  Training: of the generator "
                        "every --metrics_every epochs, the first deciding which generator is kept as "
                        "netG_best.pth; test_ddgan.py: of the written samples")
    g.add_argument("--real_img_dir", default=None,
                   help="real side of fid/pr: a folder of images, a samples .npy/.npz, or (fid only) a statistics "
                        ".npz (default: training: --metrics_samples images of the data set; test_ddgan.py, fid: "
                        "pytorch_fid/fid_stats/{dataset}_stats.npz)")
    g.add_argument("--inception_weights", default=None,
                   help="pt_inception-2015-12-05-6726825d.pth (default: $DDGAN_INCEPTION_WEIGHTS, "
                        "then the torch hub folder)")
    g.add_argument("--mode_classifier", default=None,
                   help="digit classifier of the modes metric (default: the cache of stacked_digits / stackmnist)")
    return g
