"""Command-line flags of test_ddgan.py that training does not have.

The reference's test flags keep their names and defaults (``--compute_fid``,
``--epoch_id 1000``, ``--real_img_dir``, ``--batch_size 200``); the rest choose the
checkpoint, where samples go, and which metrics to compute.  ``--num_samples`` defaults
to ``None`` so that the script can tell "not given" (one grid, as the reference) from
"given" (that many files); ``resolve_sample_flags`` fills it and the metric list and checks
the combinations; ``check_output_paths`` refuses outputs that would overwrite an input.
"""

import argparse
import os

from metrics import METRICS, MetricError, parse_metric_names
from metrics.registry import Options
from utils import outputs
from utils.argtypes import device as device_type
from utils.argtypes import nonneg_int, positive_int

DEFAULT_NUM_SAMPLES = 50000
MODE_DATASETS = ("stacked_digits", "stackmnist")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FID_STATS_DIR = os.path.join(REPO, "pytorch_fid", "fid_stats")


def metric_names(text):
    """argparse type of --metrics: "fid,is" -> ["fid", "is"]."""
    try:
        return parse_metric_names(text)
    except MetricError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_sample_flags(parser):
    """Checkpoint, sampling, output and metric flags of test_ddgan.py."""
    g = parser.add_argument_group("sampling and evaluation")
    g.add_argument("--epoch_id", type=nonneg_int, default=1000, help="epoch of netG_{epoch_id}.pth")
    g.add_argument("--checkpoint", default=None,
                   help="generator file (default: {save_dir}/dd_gan/{dataset}/{exp}/netG_{epoch_id}.pth)")
    g.add_argument("--save_dir", default="./saved_info", help="root of the training run folders")
    g.add_argument("--batch_size", type=positive_int, default=200, help="images per sampling batch")
    g.add_argument("--num_samples", type=positive_int, default=None,
                   help=f"write this many samples to --sample_dir (default with metrics: {DEFAULT_NUM_SAMPLES}; "
                        "without them and unset: one grid)")
    g.add_argument("--sample_dir", default=None,
                   help="folder for sample files and their manifest.json (default ./generated_samples/{dataset}); "
                        "a new or empty folder, or one written by this script")
    g.add_argument("--output_dir", default=".", help="folder for the grid samples_{dataset}.png")
    g.add_argument("--device", type=device_type, default="auto", help="auto (cuda if available), cpu, cuda:N")
    g.add_argument("--metrics", type=metric_names, default=[],
                   help="metrics of the written samples, comma-separated: fid, is, pr, modes")
    g.add_argument("--compute_fid", action="store_true", help="sample, then FID against --real_img_dir (--metrics fid)")
    g.add_argument("--real_img_dir", default=None,
                   help="real images: a folder, a samples .npz/.npy, or (FID only) a statistics .npz "
                        "(default for FID: pytorch_fid/fid_stats/{dataset}_stats.npz)")
    g.add_argument("--fid_batch_size", type=positive_int, default=100, help="Inception batch size")
    g.add_argument("--num_workers", type=nonneg_int, default=4, help="image loader processes for metrics")
    g.add_argument("--inception_weights", default=None,
                   help="pt_inception-2015-12-05-6726825d.pth (default: $DDGAN_INCEPTION_WEIGHTS, "
                        "then the torch hub folder)")
    g.add_argument("--compute_pr", action="store_true",
                   help="improved precision/recall (k=3) against the images in --real_img_dir (--metrics pr)")
    g.add_argument("--mode_coverage", action="store_true",
                   help=f"modes covered out of 1000 and reverse KL of --num_mode_samples samples "
                        f"({' / '.join(MODE_DATASETS)})")
    g.add_argument("--mode_classifier", default=None, help="digit classifier file for --mode_coverage")
    g.add_argument("--num_mode_samples", type=positive_int, default=26000, help="samples for --mode_coverage")
    g.add_argument("--measure_time", action="store_true", help="time the sampling of one batch, then exit")
    g.add_argument("--time_repeats", type=positive_int, default=300, help="timed batches for --measure_time")
    g.add_argument("--time_warmup", type=nonneg_int, default=10, help="untimed batches before timing")
    parser.set_defaults(seed=42)
    return g


def resolve_sample_flags(args):
    """Fill path, count and metric defaults; ValueError naming the fix for impossible combinations."""
    if args.mode_coverage and args.dataset not in MODE_DATASETS:
        raise ValueError(f"--mode_coverage needs --dataset {' or '.join(MODE_DATASETS)}, not {args.dataset}")
    chosen = [*args.metrics, *(["fid"] if args.compute_fid else []), *(["pr"] if args.compute_pr else [])]
    args.metrics = list(dict.fromkeys(chosen))
    args.write_samples = args.num_samples is not None or bool(args.metrics)
    if args.num_samples is None:
        args.num_samples = DEFAULT_NUM_SAMPLES
    if args.metrics:
        _check_metric_inputs(args)
    if args.sample_dir is None:
        args.sample_dir = f"./generated_samples/{args.dataset}"
    if args.checkpoint is None:
        args.checkpoint = f"{args.save_dir}/dd_gan/{args.dataset}/{args.exp}/netG_{args.epoch_id}.pth"
    return args


def _check_metric_inputs(args):
    """The real side each metric needs, and enough samples for each."""
    for name in args.metrics:
        metric = METRICS[name]
        if metric.real_view == "features" and args.real_img_dir is None:
            raise ValueError(f"{name} needs --real_img_dir: a folder of real images or a samples .npz")
        needed, why = metric.min_samples(Options())
        if args.num_samples < needed:
            raise ValueError(f"{name} needs --num_samples {needed} or more ({why})")


def default_fid_stats(dataset):
    """Where FID statistics of a data set are looked for when --real_img_dir is not given."""
    return os.path.join(FID_STATS_DIR, f"{dataset}_stats.npz")


def real_side(args):
    """--real_img_dir, else (for fid) the data set's statistics file, which must exist; None if no
    metric of the written samples reads a real side."""
    if not any(METRICS[name].needs_real for name in args.metrics):
        return None
    path = args.real_img_dir or default_fid_stats(args.dataset)
    if args.real_img_dir is None and not os.path.exists(path):
        raise MetricError(f"FID statistics not found: {path} (make them with `python -m pytorch_fid.fid_score "
                          f"--save-stats REAL_IMAGE_DIR {path}` or pass --real_img_dir)")
    return path


def grid_path(args):
    return os.path.join(args.output_dir, f"samples_{args.dataset}.png")


def check_output_paths(args):
    """Before anything is read or written: OutputError when what this run would write (the sample
    folder, or the grid) cannot be written, or would overwrite or mix with a file it reads."""
    if args.measure_time:
        return
    inputs = {"--real_img_dir": args.real_img_dir, "--checkpoint": args.checkpoint,
              "--mode_classifier": args.mode_classifier, "--inception_weights": args.inception_weights}
    if args.write_samples:
        outputs.check_sample_folder_output(args.sample_dir, inputs)
    elif not args.mode_coverage:
        outputs.check_writable_folder(args.output_dir, "--output_dir")
        outputs.check_not_input(grid_path(args), inputs, "--output_dir file")
