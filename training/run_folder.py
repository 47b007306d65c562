"""The run folder ``{save_dir}/dd_gan/{dataset}/{exp}/``: where it is, who holds it, what a
resumed run takes from it, and which files each epoch leaves there.

* One training at a time: ``RunLock`` holds an advisory lock (``.lock``) for the life of
  the run; a second training into the same folder stops with one line naming the holder.
* ``--resume`` continues the run as it was started, flag by flag as training.flags.RESUME says:
  a fixed flag (or a model flag) given with another value is refused.
* A fresh run never writes into a folder that holds one, nor under its own data folder.
* The files of an epoch (``epoch_files_due``): the sample grid, ``netG_{epoch}.pth`` when due, an
  evaluation (a metrics.jsonl line) when due; ``missing_epoch_files`` says what a stopped run left out.
"""

import glob
import json
import os

from metrics import parse_metric_names
from training.content import json_args
from training.evaluation import METRICS_JSONL, read_records
from training.flags import RESUME
from utils import files
from utils.flags import MODEL_KEYS
from utils.locks import FolderLock

CONTENT = "content.pth"
LOCK = ".lock"
ARGS_JSON = "args.json"


def run_dir(args):
    return os.path.join(args.save_dir, "dd_gan", args.dataset, args.exp)


# ----------------------------------------------------------------------------- checks

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


def stored_flags(content):
    """The flags a content.pth stores, in today's types (runs before --metrics was a list kept the text)."""
    stored = {**content["args"], **content["model_config"]}
    if isinstance(stored.get("metrics"), str):
        stored["metrics"] = parse_metric_names(stored["metrics"]) if stored["metrics"].strip() else []
    return stored


def resume_flags(args, explicit, content):
    """Take the run's own flags from ``content`` (content.pth) into ``args``, in place.

    Flags given on the command line stay; a model flag or a fixed flag (training.flags.RESUME) given
    with a value other than the run's is a ValueError listing each conflict.  This invocation's own
    flags stay.
    """
    stored = stored_flags(content)
    fixed = set(MODEL_KEYS) | {key for key, role in RESUME.items() if role == "fixed"}
    conflicts = [f"--{key} {stored[key]} (given {getattr(args, key)})" for key in sorted(explicit & fixed)
                 if key in stored and not _same(getattr(args, key), stored[key])]
    if conflicts:
        raise ValueError(f"the run was trained with {'; '.join(conflicts)}: drop these flags to resume it "
                         "(they come from the run), or start a new run with another --exp")
    for key, value in stored.items():
        if key in vars(args) and key not in explicit and RESUME.get(key) != "invocation":
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
    files.atomic_write_text(os.path.join(folder, ARGS_JSON), json.dumps(json_args(args), indent=2) + "\n")


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
    present = {"grid": os.path.exists(os.path.join(folder, grid_name(epoch))),
               "generator": os.path.exists(os.path.join(folder, generator_name(epoch))),
               "metrics": any(record.get("epoch") == epoch
                              for record in read_records(os.path.join(folder, METRICS_JSONL), warn=False))}
    return [part for part in epoch_files_due(args, epoch) if not present[part]]
