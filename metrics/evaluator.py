"""The Evaluator: the metrics asked for, prepared once (Inception network, real side, digit
reader) and applied to sample sets.

Everything that can fail on the user's inputs happens in the constructor, before any
training or sampling: unknown names, missing or non-finite real images or statistics, too few
of them, a missing Inception weights file or digit classifier.  Each such problem is a
MetricError with a one-line message.  The Inception network is built once per process (per
weights file and device) and shared by every metric and Evaluator that needs it.
"""

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from metrics.classifiers import read_modes, reader_for
from metrics.errors import MetricError, metric_errors
from metrics.images import SampleArrayDataset, map_batches, open_images, sample_source
from metrics.inception import InceptionWeightsError, pooled, shared_inception
from metrics.registry import METRICS, Options, check_count, parse_metric_names
from metrics.scores import activation_statistics, calculate_frechet_distance, is_stats_file, load_statistics


def inception_outputs(images, network, options):
    """(features (N, dims), logits (N, 1008) or None) of a Dataset of (3, H, W) images in [0, 1], one pass:
    pool3 and the logits, or with ``options.dims`` < 2048 an earlier block, average-pooled (pytorch-fid's --dims)."""
    if options.dims == 2048:
        return map_batches(network.features_and_logits, images, options.batch_size, options.device,
                           options.num_workers)
    features = map_batches(lambda batch: pooled(network(batch)[0]), images, options.batch_size, options.device,
                           options.num_workers)
    return features, None


@dataclass
class RealSide:
    """What metrics read of the real images: ``stats`` = (mu (2048,), sigma (2048, 2048)) and/or
    ``features`` (N, 2048) (None for a statistics file)."""

    stats: tuple | None = None
    features: np.ndarray | None = None


def open_real(real, metrics):
    """The real side for ``metrics``, checked without a network: (mu, sigma) of a statistics .npz,
    else a Dataset of the images (a folder, a .npy/.npz sample array, or an (N, H, W, C) pixel array)."""
    names = ", ".join(metric.name for metric in metrics)
    if real is None:
        raise MetricError(f"{names}: no real images given: pass a folder of images, a sample array file "
                          "or an (N, H, W, C) pixel array")
    if isinstance(real, np.ndarray):
        return SampleArrayDataset(real, "the real images")
    if is_stats_file(real):
        wanting = [metric.name for metric in metrics if metric.real_view != "stats"]
        if wanting:
            raise MetricError(f"{', '.join(wanting)} needs real images, but {real} holds FID statistics: "
                              "pass a folder of images or a sample array")
        return load_statistics(real)
    return open_images(real)


def open_samples(path):
    """The samples at ``path``, opened and checked without a network: (mu, sigma) of a statistics .npz,
    else a Dataset of the images (a folder's samples.npz when it has one, a folder, a .npy/.npz array)."""
    return load_statistics(path) if is_stats_file(path) else open_images(sample_source(path))


class SampleViews:
    """What the metrics read of one sample set, each computed once, when first read: Inception
    ``features`` (N, 2048) and ``logits`` (N, 1008) in one pass, stacked-digit ``mode_ids`` (N,)."""

    def __init__(self, images, evaluator):
        self.images, self.evaluator = images, evaluator

    @functools.cached_property
    def _inception(self):
        return inception_outputs(self.images, self.evaluator.inception, self.evaluator.options)

    @property
    def features(self):
        return self._inception[0]

    @property
    def logits(self):
        if self._inception[1] is None:
            dims = self.evaluator.options.dims
            raise MetricError(f"the Inception Score needs the classifier's logits, which --dims {dims} does not "
                              "give: use --dims 2048")
        return self._inception[1]

    @functools.cached_property
    def mode_ids(self):
        reader, options = self.evaluator.digit_reader, self.evaluator.options
        ids = map_batches(lambda batch: read_modes(reader, batch * 2 - 1), self.images, options.batch_size,
                          options.device, options.num_workers)
        return ids.astype(np.int64)


class Evaluator:
    """The metrics ``names`` ("fid,pr" or a list), ready to score sample sets.

    real: the real side of fid / pr: a folder of images, a .npy/.npz sample array, for fid
    alone also a statistics .npz (mu, sigma), or an (N, H, W, C) pixel array (``metrics.images``'s ranges).
    dataset: the digit reader of ``modes`` (stacked_digits: trained in seconds on first use and
    cached; stackmnist: needs ``mode_classifier``).
    inception_weights / random_weights: the FID Inception weights file (default: looked up as
    metrics.inception.find_fid_weights says) / a fixed random network (tests only); weights_flag:
    the command's flag for that file, which a missing-weights error names.
    batch_size, num_workers: images per network batch, loader processes; splits: Inception
    Score parts; k, nn_batch_size: precision/recall neighbourhood and distance block rows; dims: the
    Inception features (2048: pool3; 64, 192, 768: earlier blocks, pytorch-fid's --dims).
    statistics_only: the samples will come as FID statistics (``evaluate_path`` of a statistics
    file): with a statistics file as the real side too, no network is built.

    ``evaluator(samples)`` scores (N, H, W, C) samples (uint8, or floats in a range that
    ``metrics.images.pixel_range`` reads): {"fid", "is", "is_std", "precision", "recall", "modes",
    "kl"} (those asked for); ``primary`` is (key, higher_is_better) of the first.
    """

    def __init__(self, names, *, device, real=None, dataset=None, inception_weights=None, random_weights=False,
                 weights_flag="--inception_weights", mode_classifier=None, batch_size=100, num_workers=0, splits=10,
                 k=3, nn_batch_size=5000, dims=2048, statistics_only=False):
        with metric_errors():
            self.metrics = [METRICS[name] for name in parse_metric_names(
                names if isinstance(names, str) else ",".join(names))]
            self.options = Options(torch.device(device), batch_size, num_workers, splits, k, nn_batch_size, dims)
            source = self._open_real(real)
            needs_network = not (statistics_only and isinstance(source, tuple))
            self.inception = self._network(inception_weights, random_weights, weights_flag) if needs_network else None
            self.real = self._real_side(source)
            self.digit_reader, self.digit_accuracy = self._digit_reader(dataset, mode_classifier)

    @property
    def _real_metrics(self):
        return [metric for metric in self.metrics if metric.needs_real]

    def _open_real(self, real):
        """The real side, opened and checked before any network: None, (mu, sigma) or a Dataset."""
        if not self._real_metrics:
            return None
        source = open_real(real, self._real_metrics)
        if not isinstance(source, tuple):
            check_count(self._real_metrics, len(source), self.options, "real images")
        return source

    def _network(self, weights, random_weights, flag):
        if not any(metric.needs_inception for metric in self.metrics):
            return None
        try:
            return shared_inception(self.options.device, weights, random_weights, self.options.dims)
        except InceptionWeightsError as err:
            raise err.for_flag(flag) from None

    def _real_side(self, source):
        if source is None:
            return None
        if isinstance(source, tuple):
            return RealSide(stats=source)
        features, _ = inception_outputs(source, self.inception, self.options)
        wants_stats = any(metric.real_view == "stats" for metric in self._real_metrics)
        return RealSide(stats=activation_statistics(features) if wants_stats else None, features=features)

    def _digit_reader(self, dataset, classifier):
        """(StackedReader on the device, its accuracy or None) when a metric reads digits, else (None, None)."""
        if not any(metric.needs_digit_reader for metric in self.metrics):
            return None, None
        reader, accuracy = reader_for(dataset, classifier)
        return reader.to(self.options.device), accuracy

    @property
    def primary(self):
        """(result key, higher_is_better) of the first metric: what ranks runs."""
        return self.metrics[0].primary, self.metrics[0].higher_is_better

    def __call__(self, samples):
        """Scores of (N, H, W, C) samples: a numpy array, C = 1 or 3, uint8 or floats in [-1, 1], [0, 1] or [0, 255]."""
        with metric_errors():
            if not isinstance(samples, np.ndarray):
                raise MetricError(f"samples must be a numpy array (N, H, W, C), got {type(samples).__name__}")
            return self.evaluate(SampleArrayDataset(samples, "the samples"))

    def evaluate_path(self, path):
        """Scores of the samples at ``path``: a folder (its samples.npz when it has one), a .npy/.npz array,
        or (FID alone) a statistics .npz."""
        with metric_errors():
            return self.evaluate_samples(open_samples(path))

    def evaluate_samples(self, samples):
        """Scores of samples as ``open_samples`` gives them: (mu, sigma) (FID alone) or a Dataset."""
        if isinstance(samples, tuple):
            return self.fid_of_statistics(*samples)
        return self.evaluate(samples)

    def fid_of_statistics(self, mu, sigma):
        """{"fid": ...} of samples given by their statistics (the FID command line's two-statistics case)."""
        if [metric.name for metric in self.metrics] != ["fid"]:
            raise MetricError("statistics (mu, sigma) give FID alone: pass images or a sample array for "
                              f"{', '.join(metric.name for metric in self.metrics)}")
        return {"fid": calculate_frechet_distance(mu, sigma, *self.real.stats)}

    def evaluate(self, images):
        """Scores of a Dataset of (3, H, W) images in [0, 1] (``metrics.images``'s sources)."""
        with metric_errors():
            check_count(self.metrics, len(images), self.options)
            views = SampleViews(images, self)
            results = {}
            for metric in self.metrics:
                results.update(metric.compute(views, self.real, self.options))
        bad = [key for key, value in results.items() if not math.isfinite(value)]
        if bad:
            raise MetricError(f"{', '.join(bad)} came out NaN or inf: check the Inception weights and the inputs")
        return results

    def summaries(self, results):
        """One line per metric for people, e.g. "FID = 3.7512"."""
        return [metric.summary(results, self.options) for metric in self.metrics]
