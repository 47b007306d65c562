"""Train a Denoising Diffusion GAN (the reference's command lines run unchanged).

    python3 train_ddgan.py --dataset cifar10 --exp ddgan_cifar10_exp1 --num_channels_dae 128 \\
        --ch_mult 1 2 2 2 --batch_size 64 --use_ema --lazy_reg 15 --num_process_per_node 4 --save_content

Flags are parsed and checked here; training.preflight checks the run before its processes start,
utils.distributed starts them, and each runs training.trainer.train.  Also runs under
``torchrun --nproc_per_node N train_ddgan.py ...``.
"""

import datasets_prep
from metrics.flags import add_metric_flags
from training import flags as train_flags
from training import preflight, trainer
from utils import distributed, flags
from utils.argtypes import ArgumentParser
from utils.files import os_error_line


def build_parser():
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    flags.add_common_flags(parser, seed_default=train_flags.DEFAULT_SEED)
    datasets_prep.add_dataset_flags(parser)
    flags.add_model_flags(parser)
    datasets_prep.add_data_flags(parser)
    train_flags.add_train_flags(parser)
    add_metric_flags(parser)
    flags.add_performance_flags(parser)
    return parser


def parse_args(argv=None, explicit=False):
    """Parsed and cross-checked flags; bad values exit with one line naming the fix (status 2).
    With ``explicit``: (args, the set of flags given on the command line)."""
    parser = build_parser()
    args, given = parser.parse_args_explicit(argv)
    try:
        flags.resolve_model_flags(args, datasets_prep.default_ch_mult(args.dataset))
        train_flags.resolve_train_flags(args)
    except ValueError as err:
        parser.error(str(err))
    return (args, given) if explicit else args


def main(argv=None):
    args, given = parse_args(argv, explicit=True)
    try:
        lock = preflight.prepare_run(args, given)
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {os_error_line(err) if isinstance(err, OSError) else err}") from None
    try:
        distributed.launch(trainer.train, args)
    finally:
        if lock is not None:
            lock.release()


if __name__ == "__main__":
    main()
