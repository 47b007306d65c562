"""Reading and writing checkpoints, in one place.

Generator files (``netG_{epoch}.pth``) are ``{'state_dict': <reference key layout>,
'config': <model flags>, ...}``, so sampling needs no model flags and the weights load
in the reference's code after ``['state_dict']``.  ``load_generator`` also reads the
reference's own files (plain state dicts with or without DDP's ``module.`` prefix) and the
generator inside a content.pth (the EMA weights when it has them).
Every write goes to a temporary file that is renamed over the target, so a crash
never leaves a truncated checkpoint behind.
"""

import os
import sys
import tempfile

import torch

from score_sde import legacy
from score_sde.models.ncsnpp_generator_adagn import NCSNpp
from utils.distributed import gather_objects, print0
from utils.flags import MODEL_KEYS, namespace
from utils.rng import rng_state, seed_everything, set_rng_state


class CheckpointError(ValueError):
    """A checkpoint that is missing or unreadable."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint that does not fit the model flags."""


def unwrap(model):
    """The module inside a DDP / torch.compile wrapper."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """``write(binary_file)`` into a temporary ``*.tmp`` file beside ``path``, fsync, then rename
    it over ``path``: readers see the old file or the whole new one, never a part."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj, path):
    """torch.save ``obj`` to ``path`` atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def read(path, what="checkpoint"):
    """torch.load on CPU (weights only), with one-line errors for missing or corrupt files."""
    if os.path.isdir(path):
        raise CheckpointError(f"{what} {path} is a folder: pass the .pth file inside it")
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} not found: {path} (check --exp/--epoch_id or the path)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read {what} {path} ({type(err).__name__}): "
                              "the file is truncated or not a checkpoint") from None


def save_generator(path, generator, config, **extra):
    """Write ``generator``'s weights in the reference layout with its configuration.

    The tensors are stored as CPU tensors wherever the generator ran, so that a plain
    ``torch.load(path)`` works on a machine without a GPU."""
    state = {key: value.cpu() for key, value in legacy.reference_state_dict(unwrap(generator)).items()}
    atomic_save({"state_dict": state, "config": dict(config), **extra}, path)


def split_generator_file(payload, path="the file"):
    """(state_dict, config or None) from one of our generator files, a bare reference state dict, or a
    training state (content.pth: see ``_content_generator``).  CheckpointError naming ``path`` for
    anything else."""
    if isinstance(payload, dict) and "state_dict" in payload and "config" in payload:
        return payload["state_dict"], payload["config"]
    if isinstance(payload, dict) and payload and all(torch.is_tensor(v) for v in payload.values()):
        return payload, None
    if _is_training_state(payload):
        return _content_generator(payload)
    raise CheckpointError(f"{path} is not a generator checkpoint (expected a state dict or {{'state_dict', "
                          "'config'}): pass a netG_{epoch}.pth of the run")


def _is_training_state(payload):
    return isinstance(payload, dict) and isinstance(payload.get("netG_dict"), dict)


def _ema_shadow(content):
    ema = content.get("ema")
    return ema.get("shadow") if isinstance(ema, dict) and isinstance(ema.get("shadow"), dict) else None


def _content_generator(content):
    """(state_dict, config or None) of the generator in a training state: G's weights with the EMA's
    averaged parameters in their place (as netG_{epoch}.pth holds them with --use_ema) when the file
    has an EMA, else G's own."""
    state = dict(content["netG_dict"])
    state.update(_ema_shadow(content) or {})
    return state, content.get("model_config")


def _content_note(content, path):
    """The note that says which weights of the training state ``path`` are sampled, and of which epoch."""
    weights = "G's own weights (not an EMA)" if _ema_shadow(content) is None else "the EMA weights"
    done = f"after epoch {content['epoch'] - 1}" if isinstance(content.get("epoch"), int) else "of the run"
    return f"{path} is a training state: sampling {weights} {done}"


def _flag_conflicts(config, args, explicit):
    """Lines naming the explicitly given flags that contradict the stored config."""
    lines = []
    for key in explicit:
        if key in MODEL_KEYS and key in config:
            given, stored = getattr(args, key), config[key]
            if (list(given) if isinstance(given, (list, tuple)) else given) != stored:
                lines.append(f"--{key}: checkpoint has {stored}, command line says {given}")
    return lines


def _shape_mismatches(model, state_dict):
    """Lines listing missing, unexpected and mis-shaped keys (our layout)."""
    ours = model.state_dict()
    theirs = legacy.from_reference(legacy.strip_ddp_prefix(state_dict), model.reference_names())
    lines = [f"{k}: checkpoint {tuple(theirs[k].shape)} vs model {tuple(v.shape)}"
             for k, v in ours.items() if k in theirs and theirs[k].shape != v.shape]
    lines += [f"{k}: missing from checkpoint" for k in ours if k not in theirs]
    lines += [f"{k}: not in model" for k in theirs if k not in ours]
    return lines


def _mismatch(path, lines, hint):
    shown = "\n  ".join(lines[:20]) + (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else "")
    return CheckpointMismatch(f"checkpoint {path} does not fit the model flags ({len(lines)} mismatches; "
                              f"{hint}):\n  {shown}")


def load_generator(path, device, args=None, explicit=()):
    """Build NCSNpp from a generator checkpoint and load its weights (strict).

    The configuration comes from the file when it has one (flags named in ``explicit``
    must agree with it), else from ``args``.  Returns (generator in eval mode, config).
    """
    payload = read(path, "generator checkpoint")
    state_dict, config = split_generator_file(payload, path)
    if _is_training_state(payload):
        print(f"note: {_content_note(payload, path)}", file=sys.stderr)
    if config is None:
        if args is None:
            raise CheckpointError(f"{path} holds no model configuration: pass the model flags")
        config = {key: getattr(args, key) for key in MODEL_KEYS}
    elif args is not None:
        conflicts = _flag_conflicts(config, args, explicit)
        if conflicts:
            raise _mismatch(path, conflicts, "drop the flags or use the run's own values")
    generator = NCSNpp(namespace(config))
    problems = _shape_mismatches(generator, state_dict)
    if problems:
        raise _mismatch(path, problems, "pass the flags the checkpoint was trained with")
    generator.load_state_dict(state_dict, strict=True)
    return generator.to(device).eval(), config


# ----------------------------------------------------------------------------- content.pth

# What content.pth holds, in one list.  Stateful parts: content key -> the attribute of the
# training object (utils.training.Trainer) whose state_dict() is stored (None stays None).
CONTENT_STATE = {
    "netG_dict": "generator", "netD_dict": "discriminator", "optimizerG": "optG", "optimizerD": "optD",
    "schedulerG": "schedG", "schedulerD": "schedD", "ema": "ema", "scaler": "scaler",
}
# Counters: the epoch to run next, iterations done in it, generator steps done in all.
CONTENT_COUNTERS = ("epoch", "iteration", "global_step")
# Descriptions: the run's flags (JSON types), the model configuration, the number of processes
# and every process's RNG states (see utils.rng).
CONTENT_INFO = ("args", "model_config", "world_size", "rng")
CONTENT_KEYS = (*CONTENT_STATE, *CONTENT_COUNTERS, *CONTENT_INFO)


def capture_content(owner, **info):
    """The content.pth dict of ``owner`` (which has the CONTENT_STATE attributes and counters)
    plus ``info`` (the CONTENT_INFO entries)."""
    missing = [key for key in CONTENT_INFO if key not in info]
    if missing:
        raise KeyError(f"training content lacks {', '.join(missing)}")
    state = {key: None if getattr(owner, attr) is None else getattr(owner, attr).state_dict()
             for key, attr in CONTENT_STATE.items()}
    return {**state, **{key: getattr(owner, key) for key in CONTENT_COUNTERS}, **info}


def restore_content(owner, content):
    """Load ``content`` into ``owner``: every stateful part it has, and the counters.

    A part that the run has but the file lacks (``None``) is an error; a GradScaler state is
    only restored into an enabled scaler (fp16)."""
    for key, attr in CONTENT_STATE.items():
        part = getattr(owner, attr)
        if part is None or (key == "scaler" and not part.is_enabled()):
            continue
        if content[key] is None:
            raise CheckpointError(f"content.pth holds no {key} state: resume with the run's own flags")
        part.load_state_dict(content[key])
    for key in CONTENT_COUNTERS:
        setattr(owner, key, content[key])


def json_args(args):
    """``vars(args)`` with every value JSON-safe (devices as strings): the flags content.pth stores."""
    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)

    return {key: plain(value) for key, value in sorted(vars(args).items())}


def save_training(path, owner, ctx, args, config):
    """content.pth of a training process group (collective: every process's RNG state is gathered
    on rank 0, which writes the file)."""
    rng = gather_objects(rng_state(ctx.device), ctx)
    content = capture_content(owner, args=json_args(args), model_config=dict(config), world_size=ctx.world_size,
                              rng=rng)
    if ctx.is_main:
        save_content(path, content)


def resume_training(path, owner, ctx, args):
    """Restore ``owner`` from content.pth, and this process's RNG states; returns the content.

    With another number of processes or batch size the RNG streams cannot continue: each
    process is reseeded and the interrupted epoch restarts (a warning says so)."""
    content = load_content(path)
    restore_content(owner, content)
    then = (content["world_size"], content["args"]["batch_size"])
    now = (ctx.world_size, args.batch_size)
    if then == now:
        set_rng_state(content["rng"][ctx.rank], ctx.device)
        return content
    print0(ctx, f"warning: resuming with {now[0]} processes x batch {now[1]} instead of {then[0]} x {then[1]}: "
                "the run goes on, but not as it would have without the interruption")
    seed_everything(args.seed + ctx.rank + owner.epoch)
    owner.iteration = 0
    return content


def save_content(path, content):
    """Write a resumable training state (a dict with CONTENT_KEYS) atomically."""
    missing = [key for key in CONTENT_KEYS if key not in content]
    if missing:
        raise KeyError(f"training content lacks {', '.join(missing)}")
    atomic_save(content, path)


def load_content(path, mmap=False):
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
    if not isinstance(content, dict) or any(key not in content for key in CONTENT_KEYS):
        raise CheckpointError(f"{path} is not a content.pth written by this train_ddgan.py "
                              "(the reference's cannot be resumed here): start a new run")
    return content
