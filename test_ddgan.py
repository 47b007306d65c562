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
"""

import sys

from metrics import Evaluator, MetricError
from utils import checkpoint, outputs, sampling, signals
from utils.argtypes import ArgumentParser
from utils.flags import MODEL_KEYS, add_common_flags, add_model_flags, add_performance_flags, resolve_model_flags
from utils.sample_flags import add_sample_flags, check_output_paths, grid_path, real_side, resolve_sample_flags


def build_parser():
    parser = ArgumentParser(prog="test_ddgan.py", description="Sample from a DDGAN generator; FID, Inception "
                            "Score, precision/recall, mode coverage and sampling time.")
    add_common_flags(parser)
    add_model_flags(parser)
    add_sample_flags(parser)
    add_performance_flags(parser)
    return parser


def parse_args(argv=None):
    """Parsed flags; ``args.explicit`` names the model flags that were given on the command line."""
    parser = build_parser()
    args, given = parser.parse_args_explicit(argv)
    args.explicit = tuple(key for key in MODEL_KEYS if key in given)
    try:
        resolve_sample_flags(args)
        resolve_model_flags(args)
    except ValueError as err:
        parser.error(str(err))
    return args


def load_sampler(args):
    """The generator of ``args.checkpoint`` wrapped in a Sampler on ``args.device``."""
    generator, config = checkpoint.load_generator(args.checkpoint, args.device, args, args.explicit)
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
    try:
        with signals.raising():
            run(args)
    except (checkpoint.CheckpointError, outputs.OutputError, MetricError, OSError) as err:
        sys.exit(f"test_ddgan.py: error: {err}")
    except signals.Stopped as stop:
        print(f"test_ddgan.py: stopped by {stop}: nothing more is written (a sample folder being written keeps "
              f"\"complete\": false in its {outputs.MANIFEST_NAME}); run the command again", file=sys.stderr)
        sys.exit(stop.code)


if __name__ == "__main__":
    main()
