"""Command-line flags of train_ddgan.py that sampling does not have.

Every training flag of the reference keeps its name and default (``--batch_size 128``,
``--lr_g 1.5e-4``, ``--r1_gamma 0.05``...).  The additions are documented in each help
text: where runs are saved, the data loader, logging, metrics during training, the
process-group port and device, and three switches for short runs
(``--max_iters_per_epoch``, ``--stop_after_epoch``, ``--dry_run``).  Every number is
checked finite and in range at parse time; ``resolve_train_flags`` fills the seed and holds the cross-flag rules.

``RUN_FLAGS`` are the flags that define what a run computes; ``--resume`` takes them from
the run itself (utils.run_folder), and refuses one given on the command line with another value.
"""

import argparse

from utils.argtypes import device, nonneg_float, nonneg_int, open_unit_float, port, positive_float, positive_int

DEFAULT_SEED = 1024
STDDEV_GROUP = 4  # the discriminators' minibatch-stddev group size
DEFAULT_METRICS_EVERY = 10
DEFAULT_METRICS_SAMPLES = 10_000

# Flags fixed for the life of a run (besides the model flags, utils.flags.MODEL_KEYS).
RUN_FLAGS = ("seed", "lr_g", "lr_d", "beta1", "beta2", "no_lr_decay", "use_ema", "ema_decay", "r1_gamma",
             "lazy_reg", "stacked_digits_length", "lsun_subset", "metrics")


def add_optim_flags(parser):
    """Batch, epochs, Adam, learning-rate decay, EMA and R1: the reference's flags."""
    g = parser.add_argument_group("optimisation")
    g.add_argument("--batch_size", type=positive_int, default=128, help="images per process and step")
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
    g.add_argument("--save_dir", default="./saved_info",
                   help="root of the run folders: {save_dir}/dd_gan/{dataset}/{exp}/")
    g.add_argument("--resume", action="store_true",
                   help="continue from content.pth in the run folder, with the run's own training flags")
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


def add_metric_flags(parser):
    """Metrics of the generator while training (not in the reference; off by default)."""
    g = parser.add_argument_group("metrics during training (rank 0; EMA weights with --use_ema)")
    g.add_argument("--metrics", default="", metavar="NAMES",
                   help="comma-separated metrics, e.g. fid,pr or modes (default: none); the first one "
                        "decides which generator is kept as netG_best.pth")
    g.add_argument("--metrics_every", type=positive_int, default=DEFAULT_METRICS_EVERY, metavar="E",
                   help=f"epochs between evaluations (default {DEFAULT_METRICS_EVERY}; the last epoch too)")
    g.add_argument("--metrics_samples", type=positive_int, default=DEFAULT_METRICS_SAMPLES, metavar="N",
                   help=f"generated (and real) images per evaluation (default {DEFAULT_METRICS_SAMPLES})")
    g.add_argument("--metrics_batch_size", type=positive_int, default=200, help="sampling batch of an evaluation")
    g.add_argument("--real_img_dir", default=None,
                   help="real side of fid/pr: a folder of images, a samples .npy/.npz, or (fid only) a "
                        "statistics .npz; default: --metrics_samples images of the data set")
    g.add_argument("--inception_weights", default=None,
                   help="pt_inception-2015-12-05-6726825d.pth (default: $DDGAN_INCEPTION_WEIGHTS, "
                        "then the torch hub folder)")
    g.add_argument("--mode_classifier", default=None, help="digit classifier of the modes metric (stackmnist)")
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
    g.add_argument("--join_timeout", type=positive_int, default=1800, metavar="SECONDS",
                   help="how long the processes of a run wait for each other to start (default: 1800, as torch); "
                        "each node says whom it waits for")
    g.add_argument("--device", type=device, default="auto",
                   help="auto (CUDA when available), cpu, cuda or cuda:N; with cuda each process uses the GPU "
                        "of its local rank (NCCL), cuda:N one process on GPU N; CPU processes meet through gloo")
    return g


def add_train_flags(parser):
    """All training-only flags."""
    add_optim_flags(parser)
    add_run_flags(parser)
    add_metric_flags(parser)
    add_distributed_flags(parser)
    return parser


def resolve_train_flags(args):
    """Fill the reference's training seed and check cross-flag rules; ValueError with the fix."""
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
    if args.device.index is not None and args.num_proc_node * args.num_process_per_node > 1:
        raise ValueError(f"--device {args.device} names one GPU, but several processes need one each: "
                         "pass --device cuda")
    if args.master_port == 0 and args.num_proc_node > 1:
        raise ValueError("--master_port 0 (a free port) needs a single node: give every node the same port")
    return args
