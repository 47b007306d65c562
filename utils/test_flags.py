"""Command-line flags of test_ddgan.py that training does not have.

The reference's test flags keep their names and defaults (``--compute_fid``,
``--epoch_id 1000``, ``--real_img_dir``, ``--batch_size 200``); the rest choose the
checkpoint, where samples go, and which metric to compute.  ``--num_samples`` defaults
to ``None`` so that the script can tell "not given" (one grid, as the reference) from
"given" (that many files); ``resolve_test_flags`` fills it and checks the combinations.
"""



from utils.argtypes import device as device_type
from utils.argtypes import nonneg_int, positive_int

DEFAULT_NUM_SAMPLES = 50000
MODE_DATASETS = ("stacked_digits", "stackmnist")
PR_K = 3


def add_test_flags(parser):
    """Checkpoint, sampling, output and metric flags of test_ddgan.py."""
    g = parser.add_argument_group("sampling and evaluation")
    g.add_argument("--epoch_id", type=nonneg_int, default=1000, help="epoch of netG_{epoch_id}.pth")
    g.add_argument("--checkpoint", default=None,
                   help="generator file (default: {save_dir}/dd_gan/{dataset}/{exp}/netG_{epoch_id}.pth)")
    g.add_argument("--save_dir", default="./saved_info", help="root of the training run folders")
    g.add_argument("--batch_size", type=positive_int, default=200, help="images per sampling batch")
    g.add_argument("--num_samples", type=positive_int, default=None,
                   help=f"write this many samples to --sample_dir (default with --compute_fid / "
                        f"--compute_pr: {DEFAULT_NUM_SAMPLES}; without them and unset: one grid)")
    g.add_argument("--sample_dir", default=None,
                   help="folder for sample files (default ./generated_samples/{dataset})")
    g.add_argument("--output_dir", default=".", help="folder for the grid samples_{dataset}.png")
    g.add_argument("--device", type=device_type, default="auto", help="auto (cuda if available), cpu, cuda:N")
    g.add_argument("--compute_fid", action="store_true", help="sample, then FID against --real_img_dir")
    g.add_argument("--real_img_dir", default=None,
                   help="real images: a folder, a samples .npz/.npy, or (FID only) a statistics .npz")
    g.add_argument("--fid_batch_size", type=positive_int, default=100, help="Inception batch size")
    g.add_argument("--num_workers", type=nonneg_int, default=4, help="image loader processes for metrics")
    g.add_argument("--inception_weights", default=None,
                   help="pt_inception-2015-12-05-6726825d.pth (default: $DDGAN_INCEPTION_WEIGHTS, "
                        "then the torch hub folder)")
    g.add_argument("--compute_pr", action="store_true",
                   help="improved precision/recall (k=3) against the images in --real_img_dir")
    g.add_argument("--mode_coverage", action="store_true",
                   help=f"modes covered out of 1000 and reverse KL ({' / '.join(MODE_DATASETS)})")
    g.add_argument("--mode_classifier", default=None, help="digit classifier file for --mode_coverage")
    g.add_argument("--num_mode_samples", type=positive_int, default=26000, help="samples for --mode_coverage")
    g.add_argument("--measure_time", action="store_true", help="time the sampling of one batch, then exit")
    g.add_argument("--time_repeats", type=positive_int, default=300, help="timed batches for --measure_time")
    g.add_argument("--time_warmup", type=nonneg_int, default=10, help="untimed batches before timing")
    parser.set_defaults(seed=42)
    return g


def resolve_test_flags(args):
    """Fill path and count defaults; ValueError naming the fix for impossible combinations."""
    if args.mode_coverage and args.dataset not in MODE_DATASETS:
        raise ValueError(f"--mode_coverage needs --dataset {' or '.join(MODE_DATASETS)}, not {args.dataset}")
    if args.compute_pr and args.real_img_dir is None:
        raise ValueError("--compute_pr needs --real_img_dir: a folder of real images or a samples .npz")
    args.write_samples = args.num_samples is not None or args.compute_fid or args.compute_pr
    if args.num_samples is None:
        args.num_samples = DEFAULT_NUM_SAMPLES
    if args.compute_pr and args.num_samples <= PR_K:
        raise ValueError(f"--compute_pr needs --num_samples above {PR_K} (k = {PR_K} nearest neighbours)")
    if args.compute_fid and args.num_samples < 2:
        raise ValueError("--compute_fid needs --num_samples 2 or more (a covariance)")
    if args.sample_dir is None:
        args.sample_dir = f"./generated_samples/{args.dataset}"
    if args.checkpoint is None:
        args.checkpoint = f"{args.save_dir}/dd_gan/{args.dataset}/{args.exp}/netG_{args.epoch_id}.pth"
    return args
