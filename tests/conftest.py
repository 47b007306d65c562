"""Shared pytest fixtures: the reference numbers and the repository paths."""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DDGAN_SHARED", REPO.parent / "shared"))
REFERENCE_PT = SHARED / "reference" / "ddgan_reference.pt"
REFERENCE_LAYOUT = SHARED / "reference" / "official_checkpoint_layout.json"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def reference():
    """The numbers produced by the reference implementation (see shared/reference/README.md)."""
    if not REFERENCE_PT.is_file():
        pytest.skip(f"reference fixtures not found at {REFERENCE_PT} (set DDGAN_SHARED)")
    return torch.load(REFERENCE_PT, weights_only=True)


def rel_error(actual, expected):
    """||actual - expected|| / ||expected|| in float64 (the plain difference norm if expected is 0)."""
    expected = expected.double()
    return ((actual.double() - expected).norm() / expected.norm().clamp_min(1e-30)).item()
