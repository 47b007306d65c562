"""Metrics of the generator while it trains (``--metrics fid,pr --metrics_every E``).

On rank 0, after every E-th epoch and after the last, the generator that ``netG_{epoch}.pth``
holds (the EMA weights with --use_ema) samples ``--metrics_samples`` images through the
sampler of test_ddgan.py (seeded with the run's seed, the training RNG untouched), the
``metrics`` package scores them, and:

* one JSON object is appended to ``{run}/metrics.jsonl``: ``epoch``, ``step``, ``time`` (ISO
  8601), ``seconds`` (of the evaluation), the numbers (e.g. ``fid``; ``modes``, ``kl``) and
  ``checkpoint`` (the netG file of that epoch, or null);
* the numbers go to TensorBoard as ``metrics/{name}``;
* ``netG_best.pth`` keeps the generator with the best value of the first metric so far.

A resumed run drops the lines of epochs it will train again, so no epoch appears twice.  A
SIGINT/SIGTERM during an evaluation abandons it: the run saves content.pth and stops at once,
and that epoch has no line.
Everything fallible (names, Inception weights, the real side) is prepared before the first
iteration.
"""

import contextlib
import json
import os
import time

import numpy as np
import torch

from utils import checkpoint, rng, sampling

METRICS_JSONL = "metrics.jsonl"
BEST = "netG_best.pth"


def read_records(path):
    """The JSON objects of a metrics.jsonl, in order ([] if there is none)."""
    if not os.path.isfile(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def dataset_images(dataset, count):
    """uint8 (n, H, W, C) of ``count`` images spread evenly over ``dataset`` (all if it has fewer)."""
    indices = np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset))).astype(int))
    images = torch.stack([dataset[int(index)][0] for index in indices])
    return sampling.to_uint8(images).numpy()


class TrainingMetrics:
    """The evaluations of one run (rank 0).  ``real_dataset()`` gives the data set whose images
    are the real side when ``--real_img_dir`` is not given; it is only called if a metric needs one."""

    def __init__(self, args, folder, device, start_epoch, real_dataset, interruptible=contextlib.nullcontext):
        from metrics import METRICS, Evaluator, parse_metric_names

        names = parse_metric_names(args.metrics)
        real = args.real_img_dir
        if real is None and any(METRICS[name].needs_real for name in names):
            real = dataset_images(real_dataset(), args.metrics_samples)
        self.evaluator = Evaluator(names, device=device, real=real, dataset=args.dataset,
                                   inception_weights=args.inception_weights, mode_classifier=args.mode_classifier,
                                   batch_size=args.metrics_batch_size, num_workers=0)
        self.args, self.folder, self.device = args, folder, device
        self.interruptible = interruptible  # the sampling and scoring may be abandoned within it
        self.key, self.higher_is_better = self.evaluator.primary
        self.keys = ()  # the result keys, known after the first evaluation
        self.path = os.path.join(folder, METRICS_JSONL)
        self.records = [record for record in read_records(self.path) if record["epoch"] < start_epoch]
        self._rewrite()

    def best(self):
        values = [record[self.key] for record in self.records]
        if not values:
            return None
        return max(values) if self.higher_is_better else min(values)

    def improves(self, value):
        best = self.best()
        return best is None or (value > best if self.higher_is_better else value < best)

    def evaluate(self, generator, config, epoch, step, checkpoint_name=None):
        """Sample, score, record; keep netG_best.pth.  Returns the record (a dict)."""
        start = time.perf_counter()
        sampler = sampling.Sampler(generator, config, self.device)
        # The training RNG is untouched: a DataLoader draws a seed from it even in the scoring.  (The
        # interruptible block ends first, so that no signal can break off restoring the RNG states.)
        with rng.untouched(self.device), self.interruptible():
            samples = sampling.sample_array(sampler, self.args.metrics_samples, self.args.metrics_batch_size,
                                            self.args.seed)
            numbers = self.evaluator(samples)
        self.keys = tuple(numbers)
        record = {"epoch": epoch, "step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "seconds": round(time.perf_counter() - start, 3), **numbers, "checkpoint": checkpoint_name}
        if self.improves(numbers[self.key]):
            checkpoint.save_generator(os.path.join(self.folder, BEST), generator, config, epoch=epoch,
                                      metric=self.key, value=numbers[self.key])
        self.records.append(record)
        self._append(record)
        return record

    def _append(self, record):
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _rewrite(self):
        """metrics.jsonl holding exactly ``self.records`` (atomically; none written if empty and absent)."""
        if not self.records and not os.path.exists(self.path):
            return
        text = "".join(json.dumps(record) + "\n" for record in self.records)
        checkpoint.atomic_write(self.path, lambda f: f.write(text.encode()))
