"""Opt-in fast paths: mixed precision, channels_last and torch.compile.

The default (``--amp none``, no channels_last, no compile) is the reference's fp32
computation.  Each path here is a thin wrapper so that the training step and the
sampler read the same in all modes.
"""

import contextlib

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(amp, device):
    """Autocast context for ``--amp`` on ``device`` (a no-op for "none")."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=AMP_DTYPES[amp])


def grad_scaler(amp, device):
    """A GradScaler that is active only for fp16 (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=amp == "fp16")


def memory_format(channels_last):
    return torch.channels_last if channels_last else torch.contiguous_format


def prepare_model(model, channels_last=False):
    """Move parameters to the requested memory format (in place); returns the model."""
    return model.to(memory_format=memory_format(channels_last))


def prepare_input(x, channels_last=False):
    return x.contiguous(memory_format=memory_format(channels_last))


def maybe_compile(model, enabled, **kwargs):
    """torch.compile(model) when enabled; the eager module stays reachable as ``_orig_mod``."""
    return torch.compile(model, **kwargs) if enabled else model


def eager(model):
    """The uncompiled module behind ``maybe_compile`` (needed for double backward, e.g. R1)."""
    return getattr(model, "_orig_mod", model)
