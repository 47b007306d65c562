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
stop signal during an evaluation abandons it: the run saves content.pth and stops at once, and
--resume evaluates that epoch first.
Everything fallible (names, Inception weights, the real side, the records of a resumed run) is
prepared before the first iteration.  The records are read back defensively (``read_records``): a
line that cannot be read stops the run before anything is trained, naming the file and line; a
last line that a crash cut short is skipped with a warning; a NaN never counts as the best.
"""

import contextlib
import json
import math
import os
import sys
import time

import numpy as np
import torch

from metrics import METRICS, Evaluator
from score_sde.checkpoint import save_generator
from utils import files, rng, sampling

METRICS_JSONL = "metrics.jsonl"
BEST = "netG_best.pth"
TEXT_FIELDS = ("time", "checkpoint")  # the fields of a record that are text (or null); the others are numbers


def read_records(path, warn=True):
    """The records of a metrics.jsonl, in order ([] if there is none), each checked by ``check_record``.

    A ValueError names the file and line that cannot be read back, except for a last line that a
    crash cut short (no newline after it): that one is skipped.  ``warn``: print a warning for it and
    for every NaN or infinite value."""
    _not_a_folder(path)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().split("\n")
    records = []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(text)
        except ValueError:
            if number < len(lines):
                raise ValueError(f"{where} is not JSON: correct or delete the line") from None
            _warning(warn, f"{where} was cut short (the run stopped while writing it): skipped")
            continue
        records.append(check_record(record, where, warn))
    return records


def check_record(record, where, warn=True):
    """``record`` if it is a JSON object with a whole "epoch" >= 0 and a number (maybe NaN or inf, then
    a warning with ``warn``) in every field but TEXT_FIELDS; else a ValueError naming ``where``."""
    fix = "correct or delete the line"
    if not isinstance(record, dict):
        raise ValueError(f"{where} is not a JSON object: {fix}")
    epoch = record.get("epoch")
    if not _is_number(epoch) or isinstance(epoch, float) or epoch < 0:
        raise ValueError(f"{where} has no \"epoch\" (a whole number >= 0): {fix}")
    for key, value in record.items():
        if key in TEXT_FIELDS and not (value is None or isinstance(value, str)):
            raise ValueError(f"{where}: \"{key}\" is {json.dumps(value)}, not text: {fix}")
        if key not in TEXT_FIELDS and not _is_number(value):
            raise ValueError(f"{where}: \"{key}\" is {json.dumps(value)}, not a number: {fix}")
        if key not in TEXT_FIELDS and not math.isfinite(value):
            _warning(warn, f"{where}: {key} is {json.dumps(value)}, which never counts as the best")
    return record


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _warning(warn, message):
    if warn:
        print(f"warning: {message}", file=sys.stderr)


def _not_a_folder(path):
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder where the run writes a file: remove or rename it")


def check_run_files(folder, resume):
    """Pre-flight of --metrics, before anything is written: metrics.jsonl and netG_best.pth are not
    folders, and with ``resume`` every record of metrics.jsonl reads back (ValueError naming the line)."""
    _not_a_folder(os.path.join(folder, BEST))
    _not_a_folder(os.path.join(folder, METRICS_JSONL))
    if resume:
        read_records(os.path.join(folder, METRICS_JSONL), warn=False)


def dataset_images(dataset, count):
    """uint8 (n, H, W, C) of ``count`` images spread evenly over ``dataset`` (all if it has fewer)."""
    indices = np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset))).astype(int))
    images = torch.stack([dataset[int(index)][0] for index in indices])
    return sampling.to_uint8(images).numpy()


class TrainingMetrics:
    """The evaluations of one run (rank 0).  ``real_dataset()`` gives the data set whose images
    are the real side when ``--real_img_dir`` is not given; it is only called if a metric needs one."""

    def __init__(self, args, folder, device, start_epoch, real_dataset, interruptible=contextlib.nullcontext):
        names = args.metrics
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
        """The best finite value of the first metric so far (None if none): a NaN never wins."""
        values = [record[self.key] for record in self.records if math.isfinite(record.get(self.key, math.nan))]
        if not values:
            return None
        return max(values) if self.higher_is_better else min(values)

    def improves(self, value):
        best = self.best()
        return math.isfinite(value) and (best is None or (value > best if self.higher_is_better else value < best))

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
            save_generator(os.path.join(self.folder, BEST), generator, config, epoch=epoch,
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
        files.atomic_write_text(self.path, text)
