"""The run folder ``{save_dir}/dd_gan/{dataset}/{exp}/``: where it is, who holds it, what a
resumed run takes from it, and the files written there besides content.pth.

* One training at a time: ``RunLock`` holds an advisory lock (``.lock``) for the life of
  the run; a second training into the same folder stops with one line naming the holder.
* ``--resume`` continues the run as it was started: every flag not given on the command
  line comes from the run's content.pth, except the per-invocation ones (``PER_INVOCATION``);
  a model flag or one of ``RUN_FLAGS`` given with another value is refused.
* A fresh run never writes into a folder that holds one, nor under its own data folder.
"""

import contextlib
import errno
import glob
import json
import os

import torch

from utils import checkpoint, outputs, rng
from utils.flags import MODEL_KEYS
from utils.locks import FolderLock
from utils.sampling import Sampler, write_grid
from utils.train_flags import RUN_FLAGS

CONTENT = "content.pth"
LOCK = ".lock"
ARGS_JSON = "args.json"
# Flags that belong to one invocation, never taken from the run by --resume.
PER_INVOCATION = ("exp", "dataset", "save_dir", "resume", "dry_run", "stop_after_epoch", "max_iters_per_epoch",
                  "local_rank", "node_rank", "master_address", "master_port", "join_timeout", "device",
                  "num_process_per_node", "num_proc_node", "num_workers", "log_every")


def run_dir(args):
    return os.path.join(args.save_dir, "dd_gan", args.dataset, args.exp)


# ----------------------------------------------------------------------------- checks

def check_writable(folder, flag="--save_dir"):
    """The run folder can be created (or is a folder) and written; ValueError naming the fix."""
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing) or "."
    if not os.path.isdir(existing):
        raise ValueError(f"{existing} is a file, so {folder} cannot be created: choose another {flag}")
    if not outputs.can_create_in(existing):
        raise ValueError(f"{existing} is not writable: choose a writable {flag}")


def check_not_inside_data(folder, args):
    """Run files (sample grids are PNGs) must not land among the images of a --dataset folder, which
    lists every image under --datadir."""
    data = getattr(args, "datadir", None)
    if args.dataset != "folder" or not data or not os.path.isdir(data):
        return
    inside = os.path.commonpath([os.path.realpath(folder), os.path.realpath(data)]) == os.path.realpath(data)
    if inside:
        raise ValueError(f"the run folder {folder} would be inside --datadir {data}, whose images it would "
                         "mix with its own: choose a --save_dir outside the data")


def check_fresh(folder):
    """A new run must not overwrite one; the message says how this one can go on, if it can."""
    if os.path.exists(os.path.join(folder, CONTENT)):
        raise ValueError(f"{folder} already holds a run: pass --resume to continue it, "
                         "or choose another --exp or --save_dir")
    generators = sorted(glob.glob(os.path.join(folder, "netG_*.pth")))
    if generators:
        raise ValueError(f"{folder} holds generators ({os.path.basename(generators[0])}, ...) but no {CONTENT}: "
                         f"{_no_content_reason(folder)}; it cannot be resumed: choose another --exp or --save_dir, "
                         "or remove that folder to start it again")


def _no_content_reason(folder):
    """Why a run folder has generators but no content.pth, read from its args.json."""
    try:
        with open(os.path.join(folder, ARGS_JSON)) as handle:
            saved = json.load(handle).get("save_content")
    except (OSError, ValueError, AttributeError):
        saved = None
    if saved is False:
        return "it was trained without --save_content"
    return "it was stopped before its first save"


def check_resumable(folder):
    """--resume needs a content.pth; without one, say why and what to do instead."""
    if os.path.exists(os.path.join(folder, CONTENT)) or not glob.glob(os.path.join(folder, "netG_*.pth")):
        return
    raise ValueError(f"{folder} has no {CONTENT} to resume from ({_no_content_reason(folder)}): start a new run "
                     "with another --exp (and --save_content), or remove that folder to start it again")


def _same(given, stored):
    return (list(given) if isinstance(given, (list, tuple)) else given) == stored


def resume_flags(args, explicit, content):
    """Take the run's own flags from ``content`` (content.pth) into ``args``, in place.

    Flags given on the command line stay; a model flag or a RUN_FLAGS flag given with a value
    other than the run's is a ValueError listing each conflict.  Per-invocation flags stay.
    """
    stored = {**content["args"], **content["model_config"]}
    fixed = set(MODEL_KEYS) | set(RUN_FLAGS)
    conflicts = [f"--{key} {stored[key]} (given {getattr(args, key)})" for key in sorted(explicit & fixed)
                 if key in stored and not _same(getattr(args, key), stored[key])]
    if conflicts:
        raise ValueError(f"the run was trained with {'; '.join(conflicts)}: drop these flags to resume it "
                         "(they come from the run), or start a new run with another --exp")
    for key, value in stored.items():
        if key in vars(args) and key not in explicit and key not in PER_INVOCATION:
            setattr(args, key, value)
    return args


def check_left_to_do(folder, args, content):
    """--resume of a run that has trained its last epoch: allowed only while that epoch's files are not
    all written (say an evaluation was stopped); else a ValueError naming the fix."""
    last = content["epoch"] - 1
    if args.num_epoch > last or content["iteration"] != 0 or missing_epoch_files(folder, args, last):
        return
    raise ValueError(f"the run has already finished epoch {last}, so --num_epoch {args.num_epoch} leaves "
                     "nothing to train: pass a larger --num_epoch to train on")


# ----------------------------------------------------------------------------- the lock

def RunLock(folder):
    """The advisory lock on ``{folder}/.lock`` for the life of a training (see utils.locks)."""
    return FolderLock(os.path.join(folder, LOCK), lambda holder: (
        f"{folder} is in use by another training ({holder}): wait for it to end, or choose another --exp "
        "or --save_dir"))


# ----------------------------------------------------------------------------- files of a run

def remove_stale_temporaries(folder):
    """Delete the temporary files a killed run left behind (never a finished file)."""
    for path in glob.glob(os.path.join(folder, "*.tmp")):
        os.remove(path)


def write_args(folder, args):
    """args.json: the resolved flags of this invocation."""
    text = json.dumps(checkpoint.json_args(args), indent=2) + "\n"
    checkpoint.atomic_write(os.path.join(folder, ARGS_JSON), lambda f: f.write(text.encode()))


def grid_name(epoch):
    return f"sample_discrete_epoch_{epoch}.png"


def generator_name(epoch):
    return f"netG_{epoch}.pth"


def generator_due(args, epoch):
    """netG_{epoch}.pth every --save_ckpt_every epochs, as the reference, and after the last."""
    return epoch % args.save_ckpt_every == 0 or epoch == args.num_epoch


def metrics_due(args, epoch):
    """An evaluation every --metrics_every epochs and after the last (with --metrics)."""
    return bool(args.metrics) and (epoch % args.metrics_every == 0 or epoch == args.num_epoch)


def epoch_files_due(args, epoch):
    """What the end of ``epoch`` writes: "grid", "generator", "metrics"."""
    return ["grid", *["generator"] * generator_due(args, epoch), *["metrics"] * metrics_due(args, epoch)]


def missing_epoch_files(folder, args, epoch):
    """The files due at the end of ``epoch`` that ``folder`` lacks (an evaluation: no metrics.jsonl line)."""
    from utils.train_metrics import METRICS_JSONL, read_records

    present = {"grid": os.path.exists(os.path.join(folder, grid_name(epoch))),
               "generator": os.path.exists(os.path.join(folder, generator_name(epoch))),
               "metrics": any(record.get("epoch") == epoch
                              for record in read_records(os.path.join(folder, METRICS_JSONL), warn=False))}
    return [part for part in epoch_files_due(args, epoch) if not present[part]]


class EpochFiles:
    """Rank 0's files at the end of an epoch: ``xpos_epoch_{e}.png`` (every 10 epochs), the sample grid
    ``sample_discrete_epoch_{e}.png`` (test_ddgan.py's grid of the weights netG_{e}.pth holds: --seed,
    --batch_size images), ``netG_{e}.pth`` when due, and the metrics evaluation when due."""

    XPOS_EVERY = 10  # as in the reference

    def __init__(self, folder, args, config, device, metrics=None):
        self.folder, self.args, self.config, self.device, self.metrics = folder, args, config, device, metrics

    def write(self, epoch, step, generator, x_pos=None, parts=None):
        """``generator``: the weights to save (EMA with --use_ema); ``parts``: what to write (default:
        everything due, see ``epoch_files_due``).  Returns the metrics record or None."""
        parts = epoch_files_due(self.args, epoch) if parts is None else parts
        if epoch % self.XPOS_EVERY == 0 and x_pos is not None:
            write_grid(x_pos, os.path.join(self.folder, f"xpos_epoch_{epoch}.png"))
        name = generator_name(epoch) if generator_due(self.args, epoch) else None
        was_training = generator.training
        generator.eval()
        try:
            if "grid" in parts:
                self.grid(generator, epoch)
            if "generator" in parts:
                with disk_errors(name):
                    checkpoint.save_generator(os.path.join(self.folder, name), generator, self.config, epoch=epoch)
            if "metrics" in parts and self.metrics is not None:
                return self.metrics.evaluate(generator, self.config, epoch, step, name)
            return None
        finally:
            generator.train(was_training)

    def grid(self, generator, epoch):
        """The seeded grid, drawn with the training RNG untouched."""
        sampler = Sampler(generator, self.config, self.device)
        with rng.untouched(self.device), disk_errors("the sample grid"):
            torch.manual_seed(self.args.seed)
            write_grid(sampler(self.args.batch_size), os.path.join(self.folder, grid_name(epoch)))


@contextlib.contextmanager
def disk_errors(what):
    """Turn a failed write into one line: a full disk says so, and that the last files are intact."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(err.errno, f"disk full while writing {what}; every file written before is intact "
                                     "(writes are atomic): free space, then --resume") from None
        raise OSError(err.errno, f"cannot write {what} ({err.strerror}): check the folder, then --resume") from None

