"""Command-line flags shared by train_ddgan.py and test_ddgan.py, each defined once here.

The experiment's (``--exp --seed --save_dir --device --num_workers``), every model and diffusion
flag, and the opt-in fast paths, with the reference's names and defaults.  Switches that were
"on" in the reference (store_false flags there) are ``--x / --no-x`` here with the same default, so
the original command lines still run and keep their meaning.  ``model_config(args)`` is the
resolved generator/diffusion configuration that checkpoints carry, so sampling needs no model
flags.  The other shared flags belong to their package: ``--dataset --datadir`` to datasets_prep,
``--metrics --real_img_dir --inception_weights --mode_classifier`` to metrics.
"""

import argparse

import torch

from utils.argtypes import device, folder_name, nonneg_int, open_unit_float, positive_float, positive_int, seed

# The fields NCSNpp and the diffusion read; stored in every checkpoint.
MODEL_KEYS = (
    "image_size", "num_channels", "centered", "num_channels_dae", "n_mlp", "ch_mult",
    "num_res_blocks", "attn_resolutions", "dropout", "resamp_with_conv", "conditional",
    "fir", "fir_kernel", "skip_rescale", "resblock_type", "progressive",
    "progressive_input", "progressive_combine", "embedding_type", "fourier_scale",
    "not_use_tanh", "nz", "z_emb_dim", "t_emb_dim", "ngf", "num_timesteps", "beta_min",
    "beta_max", "use_geometric",
)

# ch_mult used when --ch_mult is not given and the data set has none (datasets_prep's table): per image size.
CH_MULT_BY_SIZE = {
    16: (1, 2, 2),
    32: (1, 2, 2, 2),
    64: (1, 2, 2, 2),
    128: (1, 1, 2, 2, 4),
    256: (1, 1, 2, 2, 4, 4),
    512: (1, 1, 2, 2, 4, 4, 4),
    1024: (1, 1, 2, 2, 4, 4, 4, 4),
}


def _switch(group, name, default, help):
    group.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=default, help=help)


def add_common_flags(parser, seed_default):
    """Experiment, seed (``seed_default``: the reference's, which differs between its scripts), run
    root, device and loader processes: both scripts."""
    group = parser.add_argument_group("experiment")
    group.add_argument("--exp", type=folder_name, default="experiment_cifar_default",
                       help="run name (the run folder's name)")
    group.add_argument("--seed", type=seed, default=seed_default, help=f"random seed (0 .. 2**63 - 1; default "
                       f"{seed_default}, the reference's)")
    group.add_argument("--save_dir", default="./saved_info", help="root of the run folders: "
                       "{save_dir}/dd_gan/{dataset}/{exp}/")
    group.add_argument("--device", type=device, default="auto",
                       help="auto (CUDA when available), cpu, cuda or cuda:N; training: with cuda each process uses "
                            "the GPU of its local rank (NCCL), cuda:N one process on GPU N; CPU processes meet "
                            "through gloo")
    group.add_argument("--num_workers", type=nonneg_int, default=4,
                       help="data-loader processes (per training process; for metrics, image loading)")
    return group


def add_batch_size(group, default, help):
    """--batch_size: images per process and step of the script (the reference's default differs)."""
    group.add_argument("--batch_size", type=positive_int, default=default, help=help)


def add_model_flags(parser):
    """Generator architecture and diffusion schedule: both scripts."""
    g = parser.add_argument_group("model and diffusion")
    g.add_argument("--image_size", type=positive_int, default=32, help="image side in pixels")
    g.add_argument("--num_channels", type=positive_int, default=3, help="image channels")
    _switch(g, "centered", True, "data already in [-1, 1] (else the generator maps [0, 1] to it)")
    _switch(g, "use_geometric", False, "geometric variance schedule instead of VP")
    g.add_argument("--beta_min", type=positive_float, default=0.1, help="schedule's beta_min")
    g.add_argument("--beta_max", type=positive_float, default=20.0, help="schedule's beta_max")
    g.add_argument("--num_channels_dae", type=positive_int, default=128, help="base width nf of G")
    g.add_argument("--n_mlp", type=nonneg_int, default=3, help="hidden layers of the z mapping")
    g.add_argument("--ch_mult", type=positive_int, nargs="+", default=None,
                   help="width multiplier per resolution (default: per dataset / image size)")
    g.add_argument("--num_res_blocks", type=positive_int, default=2, help="res blocks per resolution")
    g.add_argument("--attn_resolutions", type=positive_int, nargs="*", default=[16],
                   help="resolutions with self-attention")
    g.add_argument("--dropout", type=open_unit_float, default=0.0, help="dropout in res blocks, in [0, 1)")
    _switch(g, "resamp_with_conv", True, "learned conv in up/down-sampling layers")
    _switch(g, "conditional", True, "condition G on the time step")
    _switch(g, "fir", True, "FIR filter for up/down-sampling")
    g.add_argument("--fir_kernel", type=int, nargs="+", default=[1, 3, 3, 1], help="FIR taps")
    _switch(g, "skip_rescale", True, "scale skip connections by 1/sqrt(2)")
    g.add_argument("--resblock_type", default="biggan", choices=("biggan", "ddpm", "biggan_oneadagn"))
    g.add_argument("--progressive", default="none", choices=("none", "output_skip", "residual"))
    g.add_argument("--progressive_input", default="residual", choices=("none", "input_skip", "residual"))
    g.add_argument("--progressive_combine", default="sum", choices=("sum", "cat"))
    g.add_argument("--embedding_type", default="positional", choices=("positional", "fourier"))
    g.add_argument("--fourier_scale", type=positive_float, default=16.0, help="Fourier embedding scale")
    g.add_argument("--not_use_tanh", action="store_true", help="no tanh on G's output")
    g.add_argument("--nz", type=positive_int, default=100, help="latent z size")
    g.add_argument("--num_timesteps", type=positive_int, default=4, help="diffusion steps T")
    g.add_argument("--z_emb_dim", type=positive_int, default=256, help="z embedding width")
    g.add_argument("--t_emb_dim", type=positive_int, default=256, help="D's time embedding width")
    g.add_argument("--ngf", type=positive_int, default=64, help="D's base width")
    return g


def resolve_ch_mult(args, dataset_default=None):
    """Fill ``args.ch_mult`` when not given (the data set's ``dataset_default``, else by image size);
    raise ValueError with the fix if impossible."""
    if args.ch_mult is None:
        default = dataset_default or CH_MULT_BY_SIZE.get(args.image_size)
        if default is None:
            raise ValueError(f"no default --ch_mult for --image_size {args.image_size}: pass --ch_mult")
        args.ch_mult = list(default)
    levels = len(args.ch_mult)
    if args.image_size % 2 ** (levels - 1):
        raise ValueError(
            f"--image_size {args.image_size} is not divisible by 2**{levels - 1} "
            f"(--ch_mult has {levels} levels): change one of them")
    return args


def resolve_model_flags(args, dataset_ch_mult=None):
    """Fill --ch_mult (``dataset_ch_mult``: the data set's default) and check the generator and schedule
    flags across each other; ValueError names the fix."""
    resolve_ch_mult(args, dataset_ch_mult)
    for ch in {args.num_channels_dae * m for m in args.ch_mult}:
        if ch < 4 or ch % min(ch // 4, 32):
            raise ValueError(
                f"a width of {ch} channels cannot be split into GroupNorm groups: "
                "change --num_channels_dae or --ch_mult")
    if args.num_channels_dae % 2:
        raise ValueError("--num_channels_dae must be even (sinusoidal time embedding)")
    check_schedule(args)
    return args


def check_schedule(args):
    """Every beta of the schedule in (0, 1): else the diffusion's tables hold NaN or negative variances."""
    from utils.diffusion import get_sigma_schedule

    betas = get_sigma_schedule(args, "cpu")[2][1:].double()
    if not (torch.isfinite(betas).all() and (betas > 0).all() and (betas < 1).all()):
        kind = "geometric" if args.use_geometric else "VP"
        raise ValueError(f"the {kind} schedule with --beta_min {args.beta_min} --beta_max {args.beta_max} and "
                         f"--num_timesteps {args.num_timesteps} gives betas outside (0, 1): choose values whose "
                         "variance grows with t and stays below 1")


def model_config(args):
    """The generator/diffusion configuration of ``args`` as a plain dict."""
    config = {key: getattr(args, key) for key in MODEL_KEYS}
    for key in ("ch_mult", "attn_resolutions", "fir_kernel"):
        config[key] = list(config[key])
    return config


def namespace(config, **overrides):
    """An argparse.Namespace from a stored config (what NCSNpp(args) reads)."""
    return argparse.Namespace(**{**config, **overrides})


def add_performance_flags(parser):
    """Opt-in fast paths (both scripts).  The defaults keep the reference's fp32 numerics."""
    g = parser.add_argument_group("performance (opt-in; defaults reproduce the reference)")
    g.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"),
                   help="autocast precision of the networks (fp16 adds a GradScaler)")
    _switch(g, "channels_last", False, "NHWC memory format for the networks and their inputs")
    _switch(g, "compile", False, "torch.compile the networks (R1's double backward stays eager)")
    return g
