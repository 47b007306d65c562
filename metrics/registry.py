"""The metrics by name: what each needs, how it is computed, which number ranks runs.

A metric is a function of (samples, the real side, options) returning a dict of numbers:

* ``samples``: the views of one sample set (``metrics.evaluator.SampleViews``): ``features``
  (N, 2048) Inception pool3 and ``logits`` (N, 1008), ``mode_ids`` (N,) stacked-digit modes,
  each computed once, when a metric first reads it;
* ``real``: ``RealSide`` (``stats`` = (mu, sigma), ``features``) or None;
* ``options``: ``Options`` (device, batch sizes, IS splits, PR k).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from metrics.errors import MetricError
from metrics.scores import (
    activation_statistics,
    calculate_frechet_distance,
    compute_precision_recall,
    inception_score_from_logits,
    mode_coverage,
)


@dataclass(frozen=True)
class Options:
    device: torch.device = torch.device("cpu")
    batch_size: int = 100  # images per Inception / classifier batch
    num_workers: int = 0  # image loading processes
    splits: int = 10  # Inception Score parts
    k: int = 3  # precision/recall neighbourhood
    nn_batch_size: int = 5000  # rows per block of pairwise distances (precision/recall)
    dims: int = 2048  # Inception features: pool3, or an earlier block (pytorch-fid's --dims)


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable  # (samples, real, options) -> {key: number}
    primary: str  # the result key that ranks runs
    keys: dict  # every result key: True if higher is better, False if lower is, None for no ranking (a spread)
    needs_inception: bool
    needs_digit_reader: bool
    real_view: str | None  # what it reads of the real side: "stats" (a statistics file will do), "features"
    min_samples: Callable  # options -> (the fewest samples, and real images, it is defined for; why)
    summary: Callable  # (result, options) -> one line for people
    description: str

    @property
    def needs_real(self):
        return self.real_view is not None

    @property
    def higher_is_better(self):
        return self.keys[self.primary]


def _fid(samples, real, options):
    return {"fid": calculate_frechet_distance(*activation_statistics(samples.features), *real.stats)}


def _inception_score(samples, real, options):
    mean, std = inception_score_from_logits(samples.logits, options.splits)
    return {"is": mean, "is_std": std}


def _precision_recall(samples, real, options):
    precision, recall = compute_precision_recall(real.features, samples.features, options.k,
                                                 options.nn_batch_size, options.device)
    return {"precision": precision, "recall": recall}


def _modes(samples, real, options):
    modes, kl = mode_coverage(samples.mode_ids)
    return {"modes": modes, "kl": kl}


METRICS = {metric.name: metric for metric in (
    Metric("fid", _fid, primary="fid", keys={"fid": False}, needs_inception=True, needs_digit_reader=False,
           real_view="stats", min_samples=lambda o: (2, "a covariance"),
           summary=lambda r, o: f"FID = {r['fid']:.4f}",
           description="Fréchet Inception Distance to the real side (pool3 features, 2048-d)"),
    Metric("is", _inception_score, primary="is", keys={"is": True, "is_std": None}, needs_inception=True,
           needs_digit_reader=False, real_view=None, min_samples=lambda o: (o.splits, "one per split"),
           summary=lambda r, o: f"Inception Score = {r['is']:.4f} ± {r['is_std']:.4f}",
           description="Inception Score: mean and std over splits (softmax over the first 1000 logits)"),
    Metric("pr", _precision_recall, primary="recall", keys={"recall": True, "precision": True}, needs_inception=True,
           needs_digit_reader=False, real_view="features", min_samples=lambda o: (o.k + 1, f"k = {o.k}"),
           summary=lambda r, o: f"precision = {r['precision']:.4f}, recall = {r['recall']:.4f} (k = {o.k})",
           description="improved precision and recall against the real images (k nearest neighbours)"),
    Metric("modes", _modes, primary="kl", keys={"kl": False, "modes": True}, needs_inception=False,
           needs_digit_reader=True, real_view=None, min_samples=lambda o: (1, "something to classify"),
           summary=lambda r, o: f"modes covered = {r['modes']} / 1000, reverse KL = {r['kl']:.4f}",
           description="stacked-digit modes covered out of 1000, reverse KL to the uniform distribution"),
)}


def higher_is_better(key):
    """Whether a higher value of the result ``key`` (e.g. "fid", "recall") is better: True, False, or None
    for a key that ranks nothing (a spread such as is_std) or that no metric gives."""
    return next((metric.keys[key] for metric in METRICS.values() if key in metric.keys), None)


def parse_metric_names(text):
    """"fid,pr" -> ["fid", "pr"] (spaces and repeats dropped); MetricError naming the valid names."""
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if not names:
        raise MetricError(f"no metric named in {text!r}: choose from {', '.join(METRICS)} (comma-separated)")
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        shown = ", ".join(repr(name) for name in unknown)
        raise MetricError(f"unknown metric {shown} in {text!r}: choose from {', '.join(METRICS)} "
                          "(comma-separated)")
    return list(dict.fromkeys(names))


def check_count(metrics, count, options, what="samples"):
    """MetricError when ``count`` samples (or real images) are too few for one of ``metrics``."""
    for metric in metrics:
        needed, why = metric.min_samples(options)
        if count < needed:
            raise MetricError(f"{metric.name} needs at least {needed} {what} ({why}), got {count}: give more")
