"""Opt-in fast paths: mixed precision, channels_last and torch.compile.

The default (``--amp none``, no channels_last, no compile) is the reference's fp32
computation.  Each path here is a thin wrapper so that the training step and the
sampler read the same in all modes.
"""

import contextlib
import time

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


def time_calls(fn, device, warmup, repeats):
    """Seconds taken by each of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls:
    CUDA events on a GPU, perf_counter otherwise."""
    for _ in range(warmup):
        fn()
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    return [(_cuda_seconds if cuda else _cpu_seconds)(fn) for _ in range(repeats)]


def _cuda_seconds(run):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000.0


def _cpu_seconds(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start
