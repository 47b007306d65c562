"""Improved precision/recall: k-NN manifolds on constructed features (metrics.precision_recall), and
the command line python -m pytorch_fid.precision_recall."""

import numpy as np
import pytest
import torch

from metrics.images import open_images
from metrics.inception import InceptionV3
from metrics.scores import compute_precision_recall, knn_radii
from pytorch_fid.fid_score import get_activations
from tests._data_formats import random_images, write_pngs
from tests.conftest import cli_env, one_error_line, run_commands

PR = "-m pytorch_fid.precision_recall"


def line_points(*coordinates):
    """(N, 1) features at the given positions on a line."""
    return np.asarray(coordinates, dtype=np.float32)[:, None]


def brute_force(real, fake, k):
    """The definition, with full distance matrices in float64."""
    def radii(x):
        return np.sort(np.linalg.norm(x[:, None] - x[None], axis=-1), axis=1)[:, k]

    def inside(query, reference, reference_radii):
        return (np.linalg.norm(query[:, None] - reference[None], axis=-1) <= reference_radii).any(1).mean()

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


@pytest.mark.parametrize("k, expected", [(1, [1, 1, 2, 3, 4]), (2, [3, 2, 3, 4, 7])])
def test_knn_radii(k, expected):
    features = torch.from_numpy(line_points(0, 1, 3, 6, 10))
    for batch_size in (2, 5000):
        assert knn_radii(features, k, batch_size).tolist() == expected


def test_identical_sets():
    features = np.random.default_rng(0).normal(size=(40, 16))
    assert compute_precision_recall(features, features.copy()) == (1.0, 1.0)


def test_disjoint_far_apart_sets():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(30, 8)), rng.normal(size=(30, 8)) + 100
    assert compute_precision_recall(real, fake) == (0.0, 0.0)


@pytest.mark.parametrize("batch_size", [3, 7, 5000])
def test_half_of_the_fakes_copy_real_points(batch_size):
    """Real 0..19; fake 0..9 plus a far cluster.  Precision: the copies, 10/20.  Recall: fake radii
    (k = 3) reach 3 beyond 9 at most, so the real points 0..12 are covered, 13/20."""
    real = line_points(*range(20))
    fake = line_points(*range(10), *range(1000, 1010))
    assert compute_precision_recall(real, fake, k=3, batch_size=batch_size) == (0.5, 0.65)


@pytest.mark.parametrize("batch_size", [4, 13, 5000])
def test_matches_the_definition(batch_size):
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(50, 5)), rng.normal(size=(37, 5)) * 0.7 + 0.8
    precision, recall = compute_precision_recall(real, fake, k=3, batch_size=batch_size)
    expected = brute_force(real, fake, 3)
    assert (precision, recall) == (pytest.approx(expected[0]), pytest.approx(expected[1]))
    assert 0 < precision < 1 and 0 < recall < 1


def test_bad_features():
    with pytest.raises(ValueError, match="k=3 needs more than 3"):
        compute_precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="same D"):
        compute_precision_recall(np.zeros((10, 2)), np.zeros((10, 3)))


def test_command_line(tmp_path):
    real = write_pngs(tmp_path / "real", random_images(2, seed=4))
    np.save(tmp_path / "fake.npy", random_images(2, seed=5))
    flags = ["--k", "1", "--random-weights", "--num-workers", "0", "--device", "cpu"]
    both = [PR, real, tmp_path / "fake.npy"]
    ok, too_few = run_commands([*both, *flags], [*both, "--k", "2"], env=cli_env(tmp_path))
    assert ok.returncode == 0, ok.stderr
    printed = dict(line.split(": ") for line in ok.stdout.splitlines())
    model = InceptionV3(random_weights=True)
    features = [get_activations(open_images(p), model, num_workers=0) for p in (real, tmp_path / "fake.npy")]
    precision, recall = compute_precision_recall(*features, k=1)
    assert printed == {"Precision": f"{precision:.4f}", "Recall": f"{recall:.4f}"}
    line = one_error_line(too_few, 1, notices=True)
    assert ": error: " in line and "pr needs at least 3 FAKE images (k = 2), got 2: give more" in line, line
