"""Command-line flags of train_ddgan.py that sampling does not have.

Every training flag of the reference keeps its name and default (``--batch_size 128``,
``--lr_g 1.5e-4``, ``--r1_gamma 0.05``...).  The additions are documented in each help
text: where runs are saved, the data loader, logging, the process-group port and device,
and three switches for short runs (``--max_iters_per_epoch``, ``--stop_after_epoch``,
``--dry_run``).  ``check_train_flags`` holds the cross-flag rules that argparse cannot.
"""

import argparse

from utils.argtypes import nonneg_int, positive_float, positive_int, unit_float

DEFAULT_SEED = 1024
STDDEV_GROUP = 4  # the discriminators' minibatch-stddev group size


def port(text):
    """A TCP port 0..65535 (0: pick a free one)."""
    value = nonneg_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port: use 1..65535, or 0 for a free one")
    return value


def add_optim_flags(parser):
    """Batch, epochs, Adam, learning-rate decay, EMA and R1: the reference's flags."""
    g = parser.add_argument_group("optimisation")
    g.add_argument("--batch_size", type=positive_int, default=128, help="images per process and step")
    g.add_argument("--num_epoch", type=positive_int, default=1200,
                   help="last epoch: epochs 0..num_epoch run, as in the reference")
    g.add_argument("--lr_g", type=positive_float, default=1.5e-4, help="generator learning rate")
    g.add_argument("--lr_d", type=positive_float, default=1e-4, help="discriminator learning rate")
    g.add_argument("--beta1", type=unit_float, default=0.5, help="Adam beta1")
    g.add_argument("--beta2", type=unit_float, default=0.9, help="Adam beta2")
    g.add_argument("--no_lr_decay", action="store_true", help="keep the learning rates constant")
    g.add_argument("--use_ema", action=argparse.BooleanOptionalAction, default=False,
                   help="keep an exponential moving average of G (saved in netG_*.pth)")
    g.add_argument("--ema_decay", type=unit_float, default=0.9999, help="EMA decay per G step")
    g.add_argument("--r1_gamma", type=float, default=0.05, help="R1 weight (0 disables the penalty)")
    g.add_argument("--lazy_reg", type=positive_int, default=None,
                   help="apply R1 only every k-th step (not rescaled by k); default: every step")
    return g


def add_run_flags(parser):
    """Run folder, checkpoints, resuming, logging and short-run switches."""
    g = parser.add_argument_group("run folder and logging")
    g.add_argument("--save_dir", default="./saved_info",
                   help="root of the run folders: {save_dir}/dd_gan/{dataset}/{exp}/")
    g.add_argument("--resume", action="store_true", help="continue from content.pth in the run folder")
    g.add_argument("--save_content", action="store_true", help="write a resumable content.pth")
    g.add_argument("--save_content_every", type=positive_int, default=50, help="epochs between content.pth")
    g.add_argument("--save_ckpt_every", type=positive_int, default=25, help="epochs between netG_{epoch}.pth")
    g.add_argument("--num_workers", type=nonneg_int, default=4, help="data-loader workers per process")
    g.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                   help="write TensorBoard scalars to {run folder}/tb")
    g.add_argument("--log_every", type=positive_int, default=100, help="iterations between progress updates")
    g.add_argument("--max_iters_per_epoch", type=nonneg_int, default=None,
                   help="not in the reference: cap the iterations of each epoch (smoke tests)")
    g.add_argument("--stop_after_epoch", type=nonneg_int, default=None,
                   help="not in the reference: end this run after that epoch, saving content.pth "
                        "(for jobs with a time limit; continue with --resume)")
    g.add_argument("--dry_run", action="store_true",
                   help="build data, models and optimisers, time one iteration, write nothing")
    return g


def add_distributed_flags(parser):
    """The reference's multi-process launch flags, plus port and device."""
    g = parser.add_argument_group("processes (torchrun's RANK/LOCAL_RANK/WORLD_SIZE take precedence)")
    g.add_argument("--num_proc_node", type=positive_int, default=1, help="number of nodes")
    g.add_argument("--num_process_per_node", type=positive_int, default=1,
                   help="processes to start on this node (one per GPU)")
    g.add_argument("--node_rank", type=nonneg_int, default=0, help="index of this node")
    g.add_argument("--local_rank", type=nonneg_int, default=0, help="set per process by the launcher")
    g.add_argument("--master_address", default="127.0.0.1", help="address of node 0")
    g.add_argument("--master_port", type=port, default=6020,
                   help="TCP port on node 0 for the process group (the reference's fixed 6020; "
                        "0 picks a free one, single node only)")
    g.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="auto: one GPU per process when CUDA is available, else CPU with gloo")
    return g


def add_train_flags(parser):
    """All training-only flags."""
    add_optim_flags(parser)
    add_run_flags(parser)
    add_distributed_flags(parser)
    return parser


def check_train_flags(args):
    """Cross-flag rules; ValueError with the fix.  Fills the reference's training seed."""
    if args.seed is None:
        args.seed = DEFAULT_SEED
    group = min(args.batch_size, STDDEV_GROUP)
    if args.batch_size % group:
        raise ValueError(
            f"--batch_size {args.batch_size} (per process) must be below {STDDEV_GROUP} or a multiple of "
            f"{STDDEV_GROUP}, the discriminator's minibatch-stddev group: use e.g. "
            f"{args.batch_size - args.batch_size % STDDEV_GROUP}")
    if args.node_rank >= args.num_proc_node:
        raise ValueError(f"--node_rank {args.node_rank} must be below --num_proc_node {args.num_proc_node}")
    if args.master_port == 0 and args.num_proc_node > 1:
        raise ValueError("--master_port 0 (a free port) needs a single node: give every node the same port")
    if args.r1_gamma < 0:
        raise ValueError(f"--r1_gamma {args.r1_gamma} must be >= 0")
    return args
