"""Inception Score (Salimans et al., 2016) from the FID Inception-v3's logits.

p(y|x) is the softmax over the first 1000 of the 1008 logits.  The samples are cut into
``splits`` parts, part i holding samples [i N / s, (i + 1) N / s) (integer division), and the
score of a part is exp(mean over x of KL(p(y|x) || p(y))), p(y) the part's mean prediction;
the result is the mean and standard deviation over parts.  Published scores use 50k samples
and 10 splits.
"""

import numpy as np
from scipy import special

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
