"""content.pth: the resumable state of a training, in one place.

What it holds: the state dicts of the stateful parts (``STATE_KEYS``: both networks, both
optimisers, both schedulers, the EMA, the GradScaler; ``None`` for a part the run does not
have), the counters (``COUNTERS``: the epoch to run next, iterations done in it, generator steps
done in all) and descriptions (``INFO``: the run's flags as JSON types, the model configuration,
the number of processes and every process's RNG states, utils.rng).  The training object says
which of its parts is which key (``Trainer.parts``); this module reads and writes the file.
"""

import os

import torch

from score_sde.checkpoint import CONTENT_EMA, CONTENT_GENERATOR, CheckpointError
from utils.distributed import gather_objects, print0
from utils.files import atomic_save
from utils.rng import rng_state, seed_everything, set_rng_state

STATE_KEYS = (CONTENT_GENERATOR, "netD_dict", "optimizerG", "optimizerD", "schedulerG", "schedulerD", CONTENT_EMA,
              "scaler")
COUNTERS = ("epoch", "iteration", "global_step")
INFO = ("args", "model_config", "world_size", "rng")
KEYS = (*STATE_KEYS, *COUNTERS, *INFO)


def capture(parts, counters, **info):
    """The content.pth dict of ``parts`` ({state key: object with state_dict(), or None}), the
    ``counters`` ({counter: int}) and ``info`` (the INFO entries)."""
    missing = [key for key in (*STATE_KEYS, *COUNTERS, *INFO) if key not in {**parts, **counters, **info}]
    if missing:
        raise KeyError(f"training content lacks {', '.join(missing)}")
    state = {key: None if part is None else part.state_dict() for key, part in parts.items()}
    return {**state, **counters, **info}


def restore(parts, content):
    """Load ``content`` into ``parts``, every one the run has; returns the counters.

    A part that the run has but the file lacks (``None``) is an error; a GradScaler state is
    only restored into an enabled scaler (fp16)."""
    for key, part in parts.items():
        if part is None or (key == "scaler" and not part.is_enabled()):
            continue
        if content[key] is None:
            raise CheckpointError(f"content.pth holds no {key} state: resume with the run's own flags")
        part.load_state_dict(content[key])
    return {key: content[key] for key in COUNTERS}


def json_args(args):
    """``vars(args)`` with every value JSON-safe (devices as strings): the flags content.pth stores."""
    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)

    return {key: plain(value) for key, value in sorted(vars(args).items())}


def save_training(path, parts, counters, ctx, args, config):
    """content.pth of a training process group (collective: every process's RNG state is gathered
    on rank 0, which writes the file)."""
    rng = gather_objects(rng_state(ctx.device), ctx)
    content = capture(parts, counters, args=json_args(args), model_config=dict(config), world_size=ctx.world_size,
                      rng=rng)
    if ctx.is_main:
        save(path, content)


def resume_training(path, parts, ctx, args):
    """Restore ``parts`` from content.pth, and this process's RNG states; returns (content, counters).

    With another number of processes or batch size the RNG streams cannot continue: each
    process is reseeded and the interrupted epoch restarts (a warning says so)."""
    content = load(path)
    counters = restore(parts, content)
    then = (content["world_size"], content["args"]["batch_size"])
    now = (ctx.world_size, args.batch_size)
    if then == now:
        set_rng_state(content["rng"][ctx.rank], ctx.device)
        return content, counters
    print0(ctx, f"warning: resuming with {now[0]} processes x batch {now[1]} instead of {then[0]} x {then[1]}: "
                "the run goes on, but not as it would have without the interruption")
    seed_everything(args.seed + ctx.rank + counters["epoch"])
    return content, {**counters, "iteration": 0}


def save(path, content):
    """Write a resumable training state (a dict with KEYS) atomically."""
    missing = [key for key in KEYS if key not in content]
    if missing:
        raise KeyError(f"training content lacks {', '.join(missing)}")
    atomic_save(content, path)


def load(path, mmap=False):
    """Read a content.pth (weights only; ``mmap`` to peek without reading every tensor)."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder, not a content.pth: remove or rename it")
    if not os.path.isfile(path):
        raise CheckpointError(f"no training content at {path}: train with --save_content, "
                              "or check --exp/--dataset/--save_dir")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        raise CheckpointError(f"cannot read {path} ({type(err).__name__}): the file is damaged; "
                              "restore a copy or start a new run") from None
    if not isinstance(content, dict) or any(key not in content for key in KEYS):
        raise CheckpointError(f"{path} is not a content.pth written by this train_ddgan.py "
                              "(the reference's cannot be resumed here): start a new run")
    return content
