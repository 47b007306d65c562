"""Command-line flags of train_ddgan.py that sampling does not have, and what --resume does with each.

Every training flag of the reference keeps its name and default (``--batch_size 128``,
``--lr_g 1.5e-4``, ``--r1_gamma 0.05``...).  The additions are documented in each help
text: the data loader, logging, metrics during training, the process-group port, and three
switches for short runs (``--max_iters_per_epoch``, ``--stop_after_epoch``, ``--dry_run``).  Every
number is checked finite and in range at parse time; ``resolve_train_flags`` holds the cross-flag
rules.  The flags both scripts share are utils.flags', datasets_prep's and metrics'.
"""

import argparse

from score_sde.models.discriminator import check_batch_size
from utils.argtypes import nonneg_float, nonneg_int, open_unit_float, port, positive_float, positive_int
from utils.flags import add_batch_size

DEFAULT_SEED = 1024  # the reference's training seed
DEFAULT_METRICS_EVERY = 10
DEFAULT_METRICS_SAMPLES = 10_000

# What --resume does with a flag, in one table.  "fixed": the run's, for its whole life; given with
# another value, resuming is refused (the model flags, utils.flags.MODEL_KEYS, are fixed too).
# "invocation": this command's own, never taken from the run.  Every other flag is taken from the run
# unless given on the command line (--save_content, --metrics_every, --num_epoch...).
RESUME = {
    **dict.fromkeys(("seed", "lr_g", "lr_d", "beta1", "beta2", "no_lr_decay", "use_ema", "ema_decay", "r1_gamma",
                     "lazy_reg", "stacked_digits_length", "lsun_subset", "metrics"), "fixed"),
    **dict.fromkeys(("exp", "dataset", "save_dir", "resume", "dry_run", "stop_after_epoch", "max_iters_per_epoch",
                     "local_rank", "node_rank", "master_address", "master_port", "join_timeout", "device",
                     "num_process_per_node", "num_proc_node", "num_workers", "log_every"), "invocation"),
}


def add_optim_flags(parser):
    """Batch, epochs, Adam, learning-rate decay, EMA and R1: the reference's flags."""
    g = parser.add_argument_group("optimisation")
    add_batch_size(g, 128, "images per process and step")
    g.add_argument("--num_epoch", type=positive_int, default=1200,
                   help="last epoch: epochs 0..num_epoch run, as in the reference.  With --resume it may "
                        "change: the cosine decay then continues from the rate reached and ends at the new "
                        "last epoch (the rate never rises)")
    g.add_argument("--lr_g", type=positive_float, default=1.5e-4, help="generator learning rate")
    g.add_argument("--lr_d", type=positive_float, default=1e-4, help="discriminator learning rate")
    g.add_argument("--beta1", type=open_unit_float, default=0.5, help="Adam beta1, in [0, 1)")
    g.add_argument("--beta2", type=open_unit_float, default=0.9, help="Adam beta2, in [0, 1)")
    g.add_argument("--no_lr_decay", action="store_true", help="keep the learning rates constant")
    g.add_argument("--use_ema", action=argparse.BooleanOptionalAction, default=False,
                   help="keep an exponential moving average of G (saved in netG_*.pth)")
    g.add_argument("--ema_decay", type=open_unit_float, default=0.9999, help="EMA decay per G step, in [0, 1)")
    g.add_argument("--r1_gamma", type=nonneg_float, default=0.05, help="R1 weight (0 disables the penalty)")
    g.add_argument("--lazy_reg", type=positive_int, default=None,
                   help="apply R1 only every k-th step (not rescaled by k); default: every step")
    return g


def add_run_flags(parser):
    """Run folder, checkpoints, resuming, logging and short-run switches."""
    g = parser.add_argument_group("run folder and logging")
    g.add_argument("--resume", action="store_true",
                   help="continue from content.pth in the run folder, with the run's own training flags")
    g.add_argument("--save_content", action="store_true", help="write a resumable content.pth")
    g.add_argument("--save_content_every", type=positive_int, default=50, help="epochs between content.pth")
    g.add_argument("--save_ckpt_every", type=positive_int, default=25, help="epochs between netG_{epoch}.pth")
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


def add_metric_flags(parser):
    """When and how much the generator is evaluated while training (--metrics names what: metrics.flags)."""
    g = parser.add_argument_group("metrics during training (rank 0; EMA weights with --use_ema)")
    g.add_argument("--metrics_every", type=positive_int, default=DEFAULT_METRICS_EVERY, metavar="E",
                   help=f"epochs between evaluations (default {DEFAULT_METRICS_EVERY}; the last epoch too)")
    g.add_argument("--metrics_samples", type=positive_int, default=DEFAULT_METRICS_SAMPLES, metavar="N",
                   help=f"generated (and real) images per evaluation (default {DEFAULT_METRICS_SAMPLES})")
    g.add_argument("--metrics_batch_size", type=positive_int, default=200, help="sampling batch of an evaluation")
    return g


def add_distributed_flags(parser):
    """The reference's multi-process launch flags, plus the port and how long processes wait."""
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
    g.add_argument("--join_timeout", type=positive_int, default=1800, metavar="SECONDS",
                   help="how long the processes of a run wait for each other to start (default: 1800, as torch); "
                        "each node says whom it waits for")
    return g


def add_train_flags(parser):
    """All training-only flags."""
    add_optim_flags(parser)
    add_run_flags(parser)
    add_metric_flags(parser)
    add_distributed_flags(parser)
    return parser


def resolve_train_flags(args):
    """Check the cross-flag rules; ValueError with the fix."""
    check_batch_size(args.batch_size)
    if args.node_rank >= args.num_proc_node:
        raise ValueError(f"--node_rank {args.node_rank} must be below --num_proc_node {args.num_proc_node}")
    if args.device.index is not None and args.num_proc_node * args.num_process_per_node > 1:
        raise ValueError(f"--device {args.device} names one GPU, but several processes need one each: "
                         "pass --device cuda")
    if args.master_port == 0 and args.num_proc_node > 1:
        raise ValueError("--master_port 0 (a free port) needs a single node: give every node the same port")
    return args
