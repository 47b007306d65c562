"""Generator files: writing them, and reading ours, the reference's and a training state's.

Generator files (``netG_{epoch}.pth``) are ``{'state_dict': <reference key layout>,
'config': <model flags>, ...}``, so sampling needs no model flags and the weights load
in the reference's code after ``['state_dict']``.  ``load_generator`` also reads the
reference's own files (plain state dicts with or without DDP's ``module.`` prefix) and the
generator inside a content.pth (the EMA weights when it has them; the training state itself
is training.content's).  Every write is atomic (utils.files), so a crash never leaves a
truncated checkpoint behind.
"""

import os
import sys

import torch

from score_sde import legacy
from score_sde.models import build_generator
from utils.files import atomic_save
from utils.flags import MODEL_KEYS

# Where a training state (content.pth) keeps the generator and its EMA (training.content names them too).
CONTENT_GENERATOR, CONTENT_EMA = "netG_dict", "ema"


class CheckpointError(ValueError):
    """A checkpoint that is missing or unreadable."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint that does not fit the model flags."""


def unwrap(model):
    """The module inside a DDP / torch.compile wrapper."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


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
    return isinstance(payload, dict) and isinstance(payload.get(CONTENT_GENERATOR), dict)


def _ema_shadow(content):
    ema = content.get(CONTENT_EMA)
    return ema.get("shadow") if isinstance(ema, dict) and isinstance(ema.get("shadow"), dict) else None


def _content_generator(content):
    """(state_dict, config or None) of the generator in a training state: G's weights with the EMA's
    averaged parameters in their place (as netG_{epoch}.pth holds them with --use_ema) when the file
    has an EMA, else G's own."""
    state = dict(content[CONTENT_GENERATOR])
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
    generator = build_generator(config)
    problems = _shape_mismatches(generator, state_dict)
    if problems:
        raise _mismatch(path, problems, "pass the flags the checkpoint was trained with")
    generator.load_state_dict(state_dict, strict=True)
    return generator.to(device).eval(), config
