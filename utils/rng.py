"""Seeding and the RNG states a resumed run restores (torch CPU and GPU, numpy, python).

The states are stored as weights-only data (tensors, ints, lists) so that content.pth
loads with ``torch.load(weights_only=True)``.
"""

import contextlib
import random

import numpy as np
import torch


def seed_everything(seed):
    """torch (all devices), numpy and python seeded with ``seed`` (the reference: seed + rank)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def derived_seed(*numbers):
    """A 63-bit seed mixed from non-negative ints, e.g. (run seed, rank, epoch)."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(2, np.uint64)[0] >> np.uint64(1))


def rng_state(device):
    """The states of torch (CPU, and ``device`` if a GPU), numpy and python."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "python": {"version": version, "internal": list(internal), "gauss": gauss}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device):
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))


@contextlib.contextmanager
def untouched(device):
    """Within: draw freely; the states of ``rng_state(device)`` come back after (as if nothing ran)."""
    state = rng_state(device)
    try:
        yield
    finally:
        set_rng_state(state, device)
