"""A generator file the reference's own scripts load unchanged.

The reference's test_ddgan.py reads a generator checkpoint as one flat state dict whose every
key carries DDP's ``module.`` prefix (it drops the first 7 characters of each key), with the
model given by its command-line flags.  This project's ``netG_{epoch}.pth`` holds the same
weights, in the same key layout, under ``state_dict`` beside the model configuration.

    python -m score_sde.export_reference saved_info/dd_gan/cifar10/exp/netG_1200.pth [OUT.pth]

writes OUT.pth (default: ``netG_1200_reference.pth`` beside it) in the reference's layout, and
OUT.json with the configuration and the flags that describe the model to the reference's
scripts, which the command also prints.  The original file is left as it is.
"""

import json
import os

from score_sde import checkpoint, legacy
from utils import files
from utils.argtypes import ArgumentParser
from utils.flags import MODEL_KEYS, add_model_flags

# Model flags that only the discriminator reads: not needed to load a generator.
DISCRIMINATOR_KEYS = ("ngf", "t_emb_dim")
# The reference's "on" switches were store_false flags: passing one turned the feature off.
REFERENCE_OFF_SWITCHES = ("centered", "resamp_with_conv", "conditional", "fir", "skip_rescale")
# Settings that the reference's command line cannot express (its --attn_resolutions is broken).
REFERENCE_FIXED = {"attn_resolutions": [16]}


def model_defaults():
    """The model flags' defaults (the reference's)."""
    parser = ArgumentParser()
    add_model_flags(parser)
    return {key: parser.get_default(key) for key in MODEL_KEYS}


def reference_flags(config):
    """The reference's command-line flags for ``config`` (the values that differ from its defaults,
    and --ch_mult, which has none), and the settings it cannot express."""
    defaults, flags, inexpressible = model_defaults(), [], []
    for key in MODEL_KEYS:
        value, default = config[key], defaults[key]
        if key in DISCRIMINATOR_KEYS or (value == default and key != "ch_mult"):
            continue
        if key in REFERENCE_FIXED:
            inexpressible.append(f"--{key} {' '.join(map(str, value))}")
        elif key in REFERENCE_OFF_SWITCHES:
            flags.append(f"--{key}")  # value is False here: the reference's switch turns it off
        elif isinstance(value, bool):
            flags.append(f"--{key}")
        else:
            flags.append(f"--{key} {' '.join(map(str, value)) if isinstance(value, list) else value}")
    return " ".join(flags), inexpressible


def reference_payload(state_dict):
    """The flat state dict the reference loads: every key of our (reference-layout) generator file
    with ``module.`` in front."""
    return {legacy.DDP_PREFIX + key: value for key, value in legacy.strip_ddp_prefix(state_dict).items()}


def default_output(path):
    stem, _ = os.path.splitext(path)
    return f"{stem}_reference.pth"


def export(path, output):
    """Write ``output`` (+ ``.json``) from the generator file ``path``; returns (flags, inexpressible)."""
    state_dict, config = checkpoint.split_generator_file(checkpoint.read(path, "generator checkpoint"))
    if config is None:
        raise checkpoint.CheckpointError(f"{path} holds no model configuration: it is already a plain state dict, "
                                         "which the reference loads as it is")
    sidecar = os.path.splitext(output)[0] + ".json"
    for target in (output, sidecar):
        if os.path.realpath(target) == os.path.realpath(path):
            raise files.OutputError(f"{target} is the checkpoint being exported: give another output name")
        files.check_output_file(target, "the exported file")
    flags, inexpressible = reference_flags(config)
    files.atomic_save(reference_payload(state_dict), output)
    text = json.dumps({"source": os.path.abspath(path), "config": config, "reference_flags": flags}, indent=2)
    files.atomic_write_text(sidecar, text + "\n")
    return flags, inexpressible


def main(argv=None):
    parser = ArgumentParser(prog="python -m score_sde.export_reference",
                            description="Write a generator file in the reference's layout (flat, 'module.' keys).")
    parser.add_argument("checkpoint", help="a generator file of this project (netG_*.pth)")
    parser.add_argument("output", nargs="?", help="the file to write (default: CHECKPOINT's name + _reference.pth)")
    args = parser.parse_args(argv)
    output = args.output or default_output(args.checkpoint)
    with files.user_errors(parser.prog):
        flags, inexpressible = export(args.checkpoint, output)
    print(f"wrote {output} (the reference's layout) and its configuration "
          f"{os.path.splitext(output)[0]}.json; the reference's test_ddgan.py reads it with the model flags: {flags}")
    if inexpressible:
        print(f"note: the reference's command line cannot set {', '.join(inexpressible)}: edit its defaults")


if __name__ == "__main__":
    main()
