"""The paper's mode-coverage benchmark: StackedMNIST from real MNIST, trained for a wall time.

    bash benchmarks/stackedmnist.sh cpu 30m [--datadir ../shared/data] [--exp NAME] [-- TRAIN_FLAGS]
    bash benchmarks/stackedmnist.sh gpu 10m

Trains ``--dataset stackmnist`` (three MNIST digits as R, G, B at 32 px: 1,000 modes) with one
of two recipes, scores mode coverage and reverse KL on 26,000 samples (the paper's count) every
few epochs (``--metrics modes``), then draws the curve and prints modes / KL against
iterations and seconds of training.  An "epoch" here is a fixed number of iterations
(``--max_iters_per_epoch``, the recipe's), so that the curve has points within the wall time.

The wall time covers training and evaluations.  It is kept by measuring, not guessing: the
run's first epochs (the probe; epoch 0 is evaluated, as every --metrics run does) are part of
the run itself (``--stop_after_epoch``); from its seconds per epoch and per evaluation follow
the number of evaluations (at most EVALUATIONS, taking at most EVALUATION_SHARE of the time
left) and the last epoch that fit the time left, and the run goes on with ``--resume
--num_epoch N --metrics_every E`` (the cosine learning-rate decay then ends at N, as if
planned from the start).  The plan aims at MARGIN before the wall time, as the machine may slow
down; should the run outlive the wall time by GRACE, it gets a SIGINT: it saves content.pth
and stops (an evaluation in progress is dropped), and what was measured is reported.

The MNIST classifier that reads the digits is trained first if it is not cached (a few
minutes, not counted in the wall time).  TRAIN_FLAGS after ``--`` are appended to every
train_ddgan.py command and override the recipe's.
"""

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from datasets_prep.stackmnist import MNIST_RAW, mnist_present  # noqa: E402
from metrics.classifiers import default_classifier_path  # noqa: E402
from utils.argtypes import ArgumentParser  # noqa: E402

PROG = "benchmarks/stackedmnist.sh"
PROBE_EPOCHS = 2  # epochs 1..PROBE_EPOCHS time the training; epoch 0 the evaluation
EVALUATIONS = 8  # at most this many evaluations after the probe ...
EVALUATION_SHARE = 0.3  # ... taking at most this share of the time left
PROVISIONAL_EPOCHS = 1000  # --num_epoch of the probe: the cosine has hardly moved when the plan replaces it
MARGIN = 0.05  # the plan ends this fraction of the wall time early ...
GRACE = 0.10  # ... and a run that outlives the wall time by this fraction is stopped
METRICS = ("--metrics", "modes", "--metrics_samples", "26000", "--metrics_batch_size", "1000")

# cpu: the largest model and recipe for 30 minutes on 2 CPU cores (README, "StackedMNIST"): 16 px, as
# sampling 26,000 images at 32 px, even with --num_channels_dae 16, took 50 minutes on one busy core.
# gpu: the paper's configuration: the CIFAR-10 network and optimisation flags at 32 px, T = 4, the paper's
# global batch (4 x 64) on one GPU; but EMA 0.995: the paper's 0.9999 averages over 10,000 steps, more than
# minutes give (pass -- --ema_decay 0.9999 for a long run).
SHARED_FLAGS = "--num_timesteps 4 --r1_gamma 0.02 --lazy_reg 15 --use_ema"  # T = 4; R1 and EMA as the paper's
RECIPES = {
    "cpu": {"iters_per_epoch": 25, "flags": shlex.split(
        "--image_size 16 --num_channels_dae 16 --ch_mult 1 2 2 --num_res_blocks 1 --attn_resolutions --nz 16 "
        "--z_emb_dim 64 --t_emb_dim 64 --n_mlp 2 --ngf 16 --batch_size 128 --lr_g 3e-4 --lr_d 1.875e-4 "
        f"--ema_decay 0.998 {SHARED_FLAGS} --num_workers 0 --device cpu")},
    "gpu": {"iters_per_epoch": 100, "flags": shlex.split(
        "--image_size 32 --num_channels_dae 128 --ch_mult 1 2 2 2 --num_res_blocks 2 --nz 100 --z_emb_dim 256 "
        "--n_mlp 4 --embedding_type positional --ngf 64 --batch_size 256 --lr_g 1.6e-4 --lr_d 1.25e-4 "
        f"--ema_decay 0.995 {SHARED_FLAGS} --num_workers 4 --device cuda")},
}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def duration(text):
    """An argparse type: "30m", "1h30m", "90s", "90" -> seconds (float, > 0)."""
    match = _DURATION.match(text.strip())
    if not match or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"expected a wall time such as 30m, 1h30m or 90s, got {text!r}")
    hours, minutes, seconds = (float(group or 0) for group in match.groups())
    total = 3600 * hours + 60 * minutes + seconds
    if total <= 0:
        raise argparse.ArgumentTypeError(f"the wall time must be positive, got {text!r}")
    return total


def timestamp(record):
    """The wall-clock time (seconds since the epoch) a metrics.jsonl record was written."""
    return datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S%z").timestamp()


def grid_time(run, epoch):
    """When epoch ``epoch`` ended: the time its sample grid was written (before its evaluation)."""
    return os.path.getmtime(os.path.join(run, f"sample_discrete_epoch_{epoch}.png"))


def probe_timings(run, record, started):
    """(seconds per epoch of training, seconds per evaluation, start-up seconds) of the probe of
    ``run``, started at ``started``, whose ``record`` is epoch 0's evaluation: between the grids of
    epochs 0 and PROBE_EPOCHS lie that evaluation and PROBE_EPOCHS epochs."""
    per_epoch = (grid_time(run, PROBE_EPOCHS) - grid_time(run, 0) - record["seconds"]) / PROBE_EPOCHS
    return per_epoch, record["seconds"], max(0.0, grid_time(run, 0) - started - per_epoch)


def evaluations_after(done, last, every):
    """How many of the epochs after ``done`` --metrics_every ``every`` evaluates, ``last`` always."""
    return last // every - done // every + (last % every != 0)


def plan(seconds_left, per_epoch, per_evaluation, done):
    """(last epoch, --metrics_every) of the longest continuation after epoch ``done`` whose training
    and evaluations fit ``seconds_left``; None if not even one epoch and its evaluation fit."""
    evaluations = min(EVALUATIONS, max(1, int(seconds_left * EVALUATION_SHARE // per_evaluation)))
    for last in range(done + int(seconds_left // per_epoch), done, -1):
        every = max(1, -(-(last - done) // evaluations))
        cost = (last - done) * per_epoch + evaluations_after(done, last, every) * per_evaluation
        if cost <= seconds_left:
            return last, every
    return None


def curve(records, started):
    """Rows (epoch, iterations, training seconds, evaluation seconds, modes, KL): training seconds
    are the wall time since ``started`` less the evaluations up to that point."""
    rows, evaluating = [], 0.0
    for record in records:
        evaluating += record["seconds"]
        training = timestamp(record) - started - evaluating
        rows.append((record["epoch"], record["step"], training, record["seconds"], record["modes"], record["kl"]))
    return rows


def format_curve(rows):
    lines = ["epoch  iterations  training s  modes  reverse KL"]
    lines += [f"{epoch:5d}  {step:10d}  {training:10.0f}  {modes:5d}  {kl:10.3f}"
              for epoch, step, training, _, modes, kl in rows]
    return "\n".join(lines)


def read_records(path):
    if not os.path.isfile(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def build_parser():
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("recipe", choices=sorted(RECIPES), help="cpu: the 2-core recipe; gpu: the paper's configuration")
    add("wall", type=duration, help="wall time of training and evaluations, e.g. 30m, 1h, 600s")
    add("--datadir", default=os.path.join(os.environ.get("DDGAN_SHARED", os.path.join(ROOT, "..", "shared")), "data"),
        help="the folder that holds MNIST/raw (default: $DDGAN_SHARED/data, else ../shared/data beside the "
             "repository)")
    add("--dataset", default="stackmnist", choices=("stackmnist", "stacked_digits"),
        help="stacked_digits: the bundled 8x8 digits instead of MNIST (a quick check of this script)")
    add("--exp", default=None, help="run name (default stackedmnist_RECIPE); a run folder is never reused")
    add("--save_dir", default=os.path.join(ROOT, "saved_info"), help="root of the run folders "
        "(default: saved_info in the repository)")
    add("--plot", default=None, help="the curve's PNG (default: assets/stackedmnist_RECIPE.png in the repository)")
    add("--dry", action="store_true", help="print the commands and stop")
    return parser


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    args = build_parser().parse_args(argv)
    args.extra = extra
    args.exp = args.exp or f"stackedmnist_{args.recipe}"
    args.plot = os.path.abspath(args.plot or os.path.join(ROOT, "assets", f"stackedmnist_{args.recipe}.png"))
    args.datadir, args.save_dir = os.path.abspath(args.datadir), os.path.abspath(args.save_dir)
    args.run = os.path.join(args.save_dir, "dd_gan", args.dataset, args.exp)
    return args


def python(*argv):
    return [sys.executable, *map(str, argv)]


def train_command(args, *phase):
    """train_ddgan.py with the recipe, the metrics and ``phase``'s flags, then the user's TRAIN_FLAGS."""
    recipe = RECIPES[args.recipe]
    return python(os.path.join(ROOT, "train_ddgan.py"), "--dataset", args.dataset, "--datadir", args.datadir,
                  "--exp", args.exp, "--save_dir", args.save_dir, *recipe["flags"], *METRICS,
                  "--max_iters_per_epoch", recipe["iters_per_epoch"], "--save_ckpt_every", PROVISIONAL_EPOCHS,
                  "--no-tensorboard", *phase, *args.extra)


def probe_command(args):
    return train_command(args, "--num_epoch", PROVISIONAL_EPOCHS, "--metrics_every", PROVISIONAL_EPOCHS,
                         "--stop_after_epoch", PROBE_EPOCHS)


def continue_command(args, last, every):
    return train_command(args, "--resume", "--num_epoch", last, "--metrics_every", every)


def classifier_command(args):
    """The command that caches the MNIST classifier, or None if it is there (or not needed)."""
    if args.dataset != "stackmnist" or os.path.exists(default_classifier_path("stackmnist")):
        return None
    return python("-m", "metrics.mode_coverage", "--train_mnist", args.datadir)


def run(command, deadline):
    """Run ``command``; past ``deadline`` (time.time()) it gets SIGINT (it saves and stops).  Returns its
    exit status and whether it was stopped."""
    print("+", shlex.join(command), flush=True)
    process = subprocess.Popen(command, cwd=ROOT)
    stopped = False
    try:
        process.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        print(f"past the wall time: stopping {process.pid} (SIGINT; it saves content.pth)", flush=True)
        process.send_signal(signal.SIGINT)
        stopped = True
    except KeyboardInterrupt:  # Ctrl-C reached the run too: it saves and stops; report what there is
        stopped = True
    return process.wait(), stopped


def train(args, started):
    """The probe, the plan, the rest of the run; returns a line on how the run ended."""
    deadline = started + args.wall * (1 + GRACE)
    status, stopped = run(probe_command(args), deadline)
    records = read_records(os.path.join(args.run, "metrics.jsonl"))
    if status != 0 or stopped or not records:
        return f"the probe ended early (exit status {status})"
    per_epoch, per_evaluation, startup = probe_timings(args.run, records[0], started)
    print(f"probe: {per_epoch:.1f} s per epoch, {per_evaluation:.1f} s per evaluation, {startup:.1f} s to start",
          flush=True)
    seconds_left = started + args.wall * (1 - MARGIN) - time.time() - startup  # the resumed run starts up too
    steps = plan(seconds_left, per_epoch, per_evaluation, PROBE_EPOCHS)
    if steps is None:
        return "no time left after the probe"
    last, every = steps
    status, stopped = run(continue_command(args, last, every), deadline)
    return f"stopped at the wall time (exit status {status})" if stopped else f"exit status {status}"


def report(args, started, ending):
    records = read_records(os.path.join(args.run, "metrics.jsonl"))
    if not records:
        raise SystemExit(f"{PROG}: error: {args.run} has no evaluations ({ending}): see the output above")
    rows = curve(records, started)
    print(format_curve(rows))
    last = rows[-1]
    print(f"{args.recipe} recipe: {last[1]} iterations in {last[2]:.0f} s of training and "
          f"{sum(row[3] for row in rows):.0f} s of {len(rows)} evaluations; {ending}; final: {last[4]} modes, "
          f"reverse KL {last[5]:.3f}; run: {args.run}")
    subprocess.run(python("-m", "utils.plot_metrics", args.run, "--output", args.plot), cwd=ROOT, check=False)


def check(args):
    """One line and exit status 1 for what would stop the run later."""
    if os.path.exists(args.run):
        raise SystemExit(f"{PROG}: error: {args.run} exists: pass another --exp, or delete it to run again")
    if args.dataset == "stackmnist" and not mnist_present(args.datadir):
        raise SystemExit(f"{PROG}: error: MNIST is not in {os.path.join(args.datadir, MNIST_RAW)}: pass --datadir, "
                         "the folder that holds MNIST/raw")


def main(argv=None):
    args = parse_args(argv)
    prepare = classifier_command(args)
    if args.dry:
        for command in filter(None, (prepare, probe_command(args), continue_command(args, "N", "E"))):
            print(shlex.join(map(str, command)))
        return
    check(args)
    if prepare and (status := subprocess.run(prepare, cwd=ROOT).returncode) != 0:
        raise SystemExit(status)  # the classifier's own line said why
    started = time.time()
    report(args, started, train(args, started))


if __name__ == "__main__":
    main()
