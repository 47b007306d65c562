"""Sample from a trained DDGAN generator and evaluate it.

    python test_ddgan.py --dataset cifar10 --exp ddgan_cifar10_exp1 --epoch_id 1200            # one grid
    python test_ddgan.py ... --num_samples 50000                  # PNG files + samples.npz + manifest.json
    python test_ddgan.py ... --compute_fid --real_img_dir DIR     # FID (also --compute_pr, --metrics fid,is,pr)
    python test_ddgan.py --dataset stacked_digits ... --mode_coverage
    python test_ddgan.py ... --measure_time

The generator file is netG_{epoch_id}.pth of the run folder, or --checkpoint (a content.pth
gives the generator it holds: the EMA weights with --use_ema, as netG_*.pth; a note says so).  Files
written by train_ddgan.py carry their model configuration; the reference's files do
not, and then the model flags on the command line describe the network.  The metrics are
the ``metrics`` package's; their Evaluators are prepared before sampling, so that a missing
weights file or real folder fails in seconds, and nothing is written over an input.  One run at
a time writes a --sample_dir (an advisory lock, utils.locks).

The reference's test flags keep their names and defaults (``--compute_fid``, ``--epoch_id 1000``,
``--real_img_dir``, ``--batch_size 200``, seed 42); the rest choose the checkpoint, where samples go,
and which metrics to compute.  ``--num_samples`` defaults to ``None`` so that the script can tell
"not given" (one grid, as the reference) from "given" (that many files).
"""

import os
import sys

import datasets_prep
from metrics import METRICS, Evaluator, MetricError
from metrics.flags import add_metric_flags
from metrics.registry import Options
from score_sde.checkpoint import CheckpointError, load_generator
from utils import files, flags, outputs, sampling, signals
from utils.argtypes import ArgumentParser, nonneg_int, positive_int
from utils.flags import MODEL_KEYS

DEFAULT_SEED = 42  # the reference's sampling seed
DEFAULT_NUM_SAMPLES = 50000
MODE_DATASETS = ("stacked_digits", "stackmnist")
FID_STATS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pytorch_fid", "fid_stats")


def add_sample_flags(parser):
    """Checkpoint, sampling, output and metric flags of test_ddgan.py."""
    g = parser.add_argument_group("sampling and evaluation")
    g.add_argument("--epoch_id", type=nonneg_int, default=1000, help="epoch of netG_{epoch_id}.pth")
    g.add_argument("--checkpoint", default=None,
                   help="generator file (default: {save_dir}/dd_gan/{dataset}/{exp}/netG_{epoch_id}.pth)")
    flags.add_batch_size(g, 200, "images per sampling batch")
    g.add_argument("--num_samples", type=positive_int, default=None,
                   help=f"write this many samples to --sample_dir (default with metrics: {DEFAULT_NUM_SAMPLES}; "
                        "without them and unset: one grid)")
    g.add_argument("--sample_dir", default=None,
                   help="folder for sample files and their manifest.json (default ./generated_samples/{dataset}); "
                        "a new or empty folder, or one written by this script")
    g.add_argument("--output_dir", default=".", help="folder for the grid samples_{dataset}.png")
    g.add_argument("--compute_fid", action="store_true", help="sample, then FID against --real_img_dir (--metrics fid)")
    g.add_argument("--fid_batch_size", type=positive_int, default=100, help="Inception batch size")
    g.add_argument("--compute_pr", action="store_true",
                   help="improved precision/recall (k=3) against the images in --real_img_dir (--metrics pr)")
    g.add_argument("--mode_coverage", action="store_true",
                   help=f"modes covered out of 1000 and reverse KL of --num_mode_samples samples "
                        f"({' / '.join(MODE_DATASETS)})")
    g.add_argument("--num_mode_samples", type=positive_int, default=26000, help="samples for --mode_coverage")
    g.add_argument("--measure_time", action="store_true", help="time the sampling of one batch, then exit")
    g.add_argument("--time_repeats", type=positive_int, default=300, help="timed batches for --measure_time")
    g.add_argument("--time_warmup", type=nonneg_int, default=10, help="untimed batches before timing")
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
        files.check_writable_folder(args.output_dir, "--output_dir")
        outputs.check_not_input(grid_path(args), inputs, "--output_dir file")


# ----------------------------------------------------------------------------- running

def build_parser():
    parser = ArgumentParser(prog="test_ddgan.py", description="Sample from a DDGAN generator; FID, Inception "
                            "Score, precision/recall, mode coverage and sampling time.")
    flags.add_common_flags(parser, seed_default=DEFAULT_SEED)
    datasets_prep.add_dataset_flags(parser)
    flags.add_model_flags(parser)
    add_sample_flags(parser)
    add_metric_flags(parser)
    flags.add_performance_flags(parser)
    return parser


def parse_args(argv=None):
    """Parsed flags; ``args.explicit`` names the model flags that were given on the command line."""
    parser = build_parser()
    args, given = parser.parse_args_explicit(argv)
    args.explicit = tuple(key for key in MODEL_KEYS if key in given)
    try:
        resolve_sample_flags(args)
        flags.resolve_model_flags(args, datasets_prep.default_ch_mult(args.dataset))
    except ValueError as err:
        parser.error(str(err))
    return args


def load_sampler(args):
    """The generator of ``args.checkpoint`` wrapped in a Sampler on ``args.device``."""
    generator, config = load_generator(args.checkpoint, args.device, args, args.explicit)
    print(f"loaded {args.checkpoint} ({config['image_size']} px, T = {config['num_timesteps']})")
    return sampling.Sampler(generator, config, args.device, amp=args.amp, channels_last=args.channels_last,
                            compile=args.compile)


def build_evaluator(args, names, real=None):
    """The metrics ``names`` with their network, real side and digit reader, ready before any sampling."""
    evaluator = Evaluator(names, device=args.device, real=real, dataset=args.dataset,
                          inception_weights=args.inception_weights, mode_classifier=args.mode_classifier,
                          batch_size=args.fid_batch_size, num_workers=args.num_workers)
    if evaluator.digit_accuracy is not None:
        print(f"digit classifier accuracy (its own test digits): {evaluator.digit_accuracy:.4f}")
    return evaluator


def report(evaluator, results, count):
    for line in evaluator.summaries(results):
        print(f"{line} ({count} samples)")


def report_time(sampler, args):
    mean, std = sampling.time_sampling(sampler, args.batch_size, args.time_repeats, args.time_warmup)
    print(f"sampling time: {mean:.4f} +/- {std:.4f} s per batch of {args.batch_size} "
          f"({args.device.type}, {args.time_repeats} repeats after {args.time_warmup} warm-up)")


def report_grid(sampler, args):
    sampling.save_grid(sampler, args.batch_size, args.seed, grid_path(args))
    print(f"wrote {grid_path(args)}")


def write_samples(sampler, args):
    """--num_samples PNG files, samples.npz and manifest.json in --sample_dir."""
    sampling.write_samples(sampler, args.sample_dir, args.num_samples, args.batch_size, args.seed, args.checkpoint)
    print(f"wrote {args.num_samples} samples to {args.sample_dir} ({{index}}.png, {outputs.NPZ_NAME}, "
          f"{outputs.MANIFEST_NAME}); Inception Score: python ./pytorch_fid/inception_score.py "
          f"--sample_dir {args.sample_dir}")


def run(args):
    check_output_paths(args)
    sampler = load_sampler(args)
    if args.measure_time:
        report_time(sampler, args)
        return
    files = build_evaluator(args, args.metrics, real_side(args)) if args.metrics else None
    modes = build_evaluator(args, ["modes"]) if args.mode_coverage else None
    if args.write_samples:
        with outputs.sample_folder_lock(args.sample_dir):  # one run at a time writes (and scores) the folder
            write_samples(sampler, args)
            if files is not None:
                report(files, files.evaluate_path(args.sample_dir), args.num_samples)
    if modes is not None:
        images = sampling.sample_array(sampler, args.num_mode_samples, args.batch_size, args.seed)
        report(modes, modes(images), len(images))
    if not (args.write_samples or args.mode_coverage):
        report_grid(sampler, args)


def main(argv=None):
    args = parse_args(argv)
    errors = (CheckpointError, files.OutputError, MetricError, OSError)
    try:
        with files.user_errors("test_ddgan.py", errors, whole=True), signals.raising():
            run(args)
    except signals.Stopped as stop:
        print(f"test_ddgan.py: stopped by {stop}: nothing more is written (a sample folder being written keeps "
              f"\"complete\": false in its {outputs.MANIFEST_NAME}); run the command again", file=sys.stderr)
        sys.exit(stop.code)


if __name__ == "__main__":
    main()
