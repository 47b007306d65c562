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

Modules: ``registry`` (the table, ``parse_metric_names``), ``evaluator`` (``Evaluator``, the
shared Inception network, the real side), ``inception_score``, ``precision_recall`` and
``mode_coverage`` (the computations; the last also a command line), ``errors`` (MetricError).
The FID itself and the Inception network are ``pytorch_fid``'s.
"""

from metrics.errors import MetricError
from metrics.evaluator import Evaluator
from metrics.registry import METRICS, Metric, parse_metric_names

__all__ = ["METRICS", "Evaluator", "Metric", "MetricError", "parse_metric_names"]
