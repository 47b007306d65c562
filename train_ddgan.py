"""Train a Denoising Diffusion GAN (the reference's command lines run unchanged).

    python3 train_ddgan.py --dataset cifar10 --exp ddgan_cifar10_exp1 --num_channels_dae 128 \\
        --ch_mult 1 2 2 2 --batch_size 64 --use_ema --lazy_reg 15 --num_process_per_node 4 --save_content

Flags are parsed and checked here; the loop lives in utils.training, process set-up in
utils.distributed.  Also runs under ``torchrun --nproc_per_node N train_ddgan.py ...``.
"""

import argparse

import datasets_prep
from utils import distributed, flags, train_flags, training


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    flags.add_common_flags(parser)
    flags.add_model_flags(parser)
    datasets_prep.add_data_flags(parser)
    train_flags.add_train_flags(parser)
    flags.add_performance_flags(parser)
    return parser


def parse_args(argv=None):
    """Parsed and cross-checked flags; bad combinations exit with the fix (status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        flags.check_model_flags(args)
        train_flags.check_train_flags(args)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        training.check_run(args)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    distributed.launch(training.train, args)


if __name__ == "__main__":
    main()
