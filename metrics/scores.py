"""The numbers of the metrics: those based on Inception outputs (metrics.inception), and mode coverage.

* FID: the Fréchet distance of two Gaussians fitted to pool3 features (statistics files hold
  their ``mu`` and ``sigma``), as pytorch-fid computes it.
* Inception Score (Salimans et al., 2016): p(y|x) is the softmax over the first 1000 of the 1008
  logits.  The samples are cut into ``splits`` parts, part i holding samples [i N / s, (i + 1) N / s)
  (integer division), and the score of a part is exp(mean over x of KL(p(y|x) || p(y))), p(y) the
  part's mean prediction; the result is the mean and standard deviation over parts.  Published
  scores use 50k samples and 10 splits.
* Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019): each set of feature vectors
  stands for its manifold, the union of balls around its points, each of radius the distance to
  that point's k-th nearest neighbour in the set (k = 3).  Precision is the fraction of generated
  points inside the real manifold, recall the fraction of real points inside the generated one.
  Distances are computed in (batch x batch) blocks, so memory stays bounded for 50k x 50k pairs.
* Mode coverage (the StackedMNIST protocol): of N samples read as mode ids (metrics.classifiers)
  with frequencies p, the number of modes with p > 0 and the reverse KL(p || uniform) = sum over
  p > 0 of p log(1000 p): 0 for a perfectly even spread, log(1000) = 6.91 for a single mode.
"""

import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import linalg, special

from metrics.errors import MetricError
from metrics.images import STATS_KEYS, npz_keys
from utils.files import atomic_write

# ----------------------------------------------------------------------------- FID

def activation_statistics(activations):
    """Mean and covariance (rows are samples) of (N, D) activations, N >= 2."""
    if len(activations) < 2:
        raise ValueError(f"FID statistics need at least 2 images, got {len(activations)}")
    return np.mean(activations, axis=0), np.cov(activations, rowvar=False)


def is_stats_file(path):
    """Whether ``path`` is an .npz holding FID statistics (mu and sigma)."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        return set(STATS_KEYS) <= set(npz_keys(path))
    except ValueError:
        return False


def load_statistics(path):
    """(mu (D,), sigma (D, D)) of a statistics .npz; ValueError when they are not a finite mean and covariance."""
    with np.load(path) as data:
        mu, sigma = data["mu"], data["sigma"]
    check_statistics(mu, sigma, path)
    return mu, sigma


def check_statistics(mu, sigma, where="the statistics"):
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f"{where}: mu must be (D,) and sigma (D, D), got {mu.shape} and {sigma.shape}; "
                         "compute the statistics again")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{where}: mu or sigma holds NaN or inf values: compute the statistics again "
                         "from finite images")


def calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), the Fréchet distance of two Gaussians.

    As in pytorch-fid: when the matrix square root is not finite (singular product), eps is
    added to both diagonals; its imaginary part (round-off) is dropped unless its diagonal
    exceeds 1e-3.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape:
        raise ValueError(f"the statistics have different dimensions ({mu1.size} vs {mu2.size}): "
                         "compute both with the same --dims")
    check_statistics(mu1, sigma1, "the first statistics")
    check_statistics(mu2, sigma2, "the second statistics")
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(mu1.size) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.abs(covmean.imag).max():.3g} in the matrix square "
                             "root: the covariances are not valid (too few images for --dims?)")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _sqrtm(matrix):
    """scipy's sqrtm without its singular-matrix warning (the caller handles that case)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(matrix)


def stats_target(path):
    """The file np.savez writes for ``path``: ".npz" is added unless the name ends in it."""
    path = str(path)
    return path if path.endswith(".npz") else path + ".npz"


def save_statistics(path, mu, sigma):
    """Write FID statistics (``mu``, ``sigma``) to the .npz ``path`` atomically."""
    atomic_write(path, lambda handle: np.savez_compressed(handle, mu=mu, sigma=sigma))


# ----------------------------------------------------------------------------- Inception Score

NUM_CLASSES = 1000


def split_bounds(count, splits):
    """[0, ..., count]: part i is [bounds[i], bounds[i + 1]), i.e. [i count // splits, (i + 1) count // splits)."""
    return [index * count // splits for index in range(splits + 1)]


def inception_score_from_logits(logits, splits=10):
    """(mean, std) over ``splits`` parts of the Inception Score of (N, C >= 1000) logits."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < NUM_CLASSES:
        raise ValueError(f"logits must be (N, classes >= {NUM_CLASSES}), got shape {logits.shape}")
    check_sample_count(len(logits), splits)
    probs = special.softmax(logits[:, :NUM_CLASSES], axis=1)
    bounds = split_bounds(len(probs), splits)
    scores = [_split_score(probs[start:stop]) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]
    return float(np.mean(scores)), float(np.std(scores))


def _split_score(probs):
    """exp(mean_x KL(p(y|x) || p(y))) for (n, classes) predictions p(y|x)."""
    marginal = probs.mean(axis=0, keepdims=True)
    return np.exp(special.rel_entr(probs, marginal).sum(axis=1).mean())


def check_sample_count(count, splits):
    if count < splits:
        raise ValueError(f"{count} samples cannot make {splits} splits: give more samples or lower --splits")


# ----------------------------------------------------------------------------- precision and recall

def knn_radii(features, k=3, batch_size=5000):
    """(N,) distance from each row of ``features`` (N, D) to its k-th nearest other row."""
    if len(features) <= k:
        raise ValueError(f"k={k} needs more than {k} feature vectors per set, got {len(features)}")
    radii = []
    for rows in features.split(batch_size):
        nearest = None  # (b, <= k + 1) smallest distances so far; the row itself is one of them (0)
        for cols in features.split(batch_size):
            distances = torch.cdist(rows, cols)
            candidates = distances if nearest is None else torch.cat([nearest, distances], 1)
            nearest = candidates.topk(min(k + 1, candidates.shape[1]), dim=1, largest=False).values
        radii.append(nearest[:, k])
    return torch.cat(radii)


def inside_manifold(query, reference, radii, batch_size=5000):
    """(Nq,) bool: whether each query row lies within radii[j] of some reference row j."""
    inside = []
    for rows in query.split(batch_size):
        hit = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
        for cols, col_radii in zip(reference.split(batch_size), radii.split(batch_size), strict=True):
            hit |= (torch.cdist(rows, cols) <= col_radii).any(dim=1)
        inside.append(hit)
    return torch.cat(inside)


def compute_precision_recall(real_features, fake_features, k=3, batch_size=5000, device=None):
    """(precision, recall) of fake against real features, both (N, D) arrays or tensors."""
    real, fake = (torch.as_tensor(f, dtype=torch.float32, device=device)
                  for f in (real_features, fake_features))
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    real_radii, fake_radii = knn_radii(real, k, batch_size), knn_radii(fake, k, batch_size)
    precision = inside_manifold(fake, real, real_radii, batch_size).sum().item() / len(fake)
    recall = inside_manifold(real, fake, fake_radii, batch_size).sum().item() / len(real)
    return precision, recall


NUM_MODES = 1000  # stacked digits: 10 x 10 x 10


def mode_coverage(mode_ids, num_modes=NUM_MODES):
    """(modes covered, reverse KL(p_gen || uniform)) of integer mode ids in [0, num_modes)."""
    ids = torch.as_tensor(mode_ids).long().flatten()
    if len(ids) == 0 or ids.min() < 0 or ids.max() >= num_modes:
        raise MetricError(f"mode ids must be a non-empty list of integers in [0, {num_modes})")
    counts = torch.bincount(ids, minlength=num_modes).double()
    p = counts[counts > 0] / counts.sum()
    return int(len(p)), float((p * torch.log(p * num_modes)).sum())
