"""Evaluation of generated samples: one registry of metrics and one Evaluator, called by
test_ddgan.py, the pytorch_fid command lines and the training loop alike.

    from metrics import Evaluator, parse_metric_names

    evaluator = Evaluator(parse_metric_names("fid,pr"), device="cuda", real="data/real")  # fails here, fast
    evaluator(samples)   # uint8 (N, H, W, C) -> {"fid": ..., "precision": ..., "recall": ...}
    evaluator.primary    # ("fid", False): the number that ranks runs, and whether higher is better

| name | result keys (primary first) | needs |
|---|---|---|
| fid | fid | Inception; real images or a statistics .npz |
| is | is, is_std | Inception (softmax over the first 1000 logits, 10 splits) |
| pr | recall, precision | Inception; real images (k = 3) |
| modes | kl, modes | dataset stacked_digits / stackmnist (+ classifier) |

Modules: ``registry`` (the table: what each metric needs and gives, which way is better;
``parse_metric_names``), ``evaluator`` (``Evaluator``: the real side, the views of a sample set),
``inception`` (the FID Inception-v3 and its weights file, built once per process),
``images`` (the image sources: folders, sample arrays, pixel ranges), ``scores`` (FID, Inception
Score, precision/recall from Inception outputs; mode coverage from mode ids), ``classifiers``
(the digit classifiers and the reader of stacked images), ``mode_coverage`` (its command line;
imported by nothing here, so that ``python -m metrics.mode_coverage`` runs cleanly), ``flags``
(the metric flags both scripts share), ``errors`` (MetricError).
``pytorch_fid`` is pytorch-fid's interface over this package, and its command lines.
"""

from metrics.errors import MetricError
from metrics.evaluator import Evaluator
from metrics.registry import METRICS, Metric, parse_metric_names

__all__ = ["METRICS", "Evaluator", "Metric", "MetricError", "parse_metric_names"]
