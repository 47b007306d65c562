"""Checkpoint keys of the reference implementation, converted in one place.

The reference generator kept its blocks in one flat ``all_modules`` list, so its keys
read ``all_modules.17.Conv_0.weight``; ours name the block (``down.1.res.0.Conv_0.weight``).
``NCSNpp.reference_names()`` gives our module path for every index of that list, which
makes the conversion a rename in both directions.  Checkpoints saved from DDP carry a
``module.`` prefix on every key; loading strips it.  Block-internal names are the same
in both layouts, and so are the discriminators' keys.
"""

DDP_PREFIX = "module."
REFERENCE_LIST = "all_modules."


def strip_ddp_prefix(state_dict):
    """A copy of ``state_dict`` without DDP's ``module.`` prefix (no-op if absent)."""
    if state_dict and all(key.startswith(DDP_PREFIX) for key in state_dict):
        return {key[len(DDP_PREFIX):]: value for key, value in state_dict.items()}
    return dict(state_dict)


def from_reference(state_dict, names):
    """Rename ``all_modules.{i}.rest`` keys to ``{names[i]}.rest``; other keys pass through."""
    converted = {}
    for key, value in state_dict.items():
        if key.startswith(REFERENCE_LIST):
            index, rest = key[len(REFERENCE_LIST):].split(".", 1)
            key = f"{names[int(index)]}.{rest}" if int(index) < len(names) else key
        converted[key] = value
    return converted


def to_reference(state_dict, names):
    """Inverse of ``from_reference``: our module paths back to ``all_modules.{i}``."""
    index_of = {name: i for i, name in enumerate(names)}
    converted = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            head = ".".join(parts[:cut])
            if head in index_of:
                key = f"{REFERENCE_LIST}{index_of[head]}.{'.'.join(parts[cut:])}"
                break
        converted[key] = value
    return converted


def _rewrite(state_dict, prefix, convert):
    """Apply ``convert`` to the keys under ``prefix``, in place (load pre-hooks must)."""
    keys = [key for key in state_dict if key.startswith(prefix)]
    local = {key[len(prefix):]: state_dict.pop(key) for key in keys}
    state_dict.update({prefix + key: value for key, value in convert(local).items()})


def generator_load_hook(module, state_dict, prefix, *args):
    """Load pre-hook of NCSNpp: accept DDP-prefixed and flat-list (reference) keys."""
    _rewrite(state_dict, prefix, lambda sd: from_reference(strip_ddp_prefix(sd), module.reference_names()))


def ddp_prefix_load_hook(module, state_dict, prefix, *args):
    """Load pre-hook that accepts DDP-prefixed keys."""
    _rewrite(state_dict, prefix, strip_ddp_prefix)


def reference_state_dict(generator):
    """The generator's weights in the reference's key layout (without ``module.``)."""
    return to_reference(generator.state_dict(), generator.reference_names())
