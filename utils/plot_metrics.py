"""Draw the metric curves of a training run: ``python -m utils.plot_metrics RUN_DIR [--output PNG]``.

Reads ``RUN_DIR/metrics.jsonl`` (written by train_ddgan.py --metrics) and draws every number
against the epoch, one panel per metric, into ``RUN_DIR/metrics.png`` (or --output).  The
best value of each curve is marked.  Needs matplotlib (``pip install matplotlib``).
"""

import math
import os
import sys

from utils.argtypes import ArgumentParser
from utils.train_metrics import METRICS_JSONL, read_records

# Record fields that are not metric values.
NOT_METRICS = ("epoch", "step", "time", "seconds", "checkpoint")
LOWER_IS_BETTER = ("fid", "kl")


def curves(records):
    """{metric: ([epochs], [values])} of the numeric fields of ``records``, in file order."""
    result = {}
    for record in records:
        if not isinstance(record, dict) or "epoch" not in record:
            continue
        for key, value in record.items():
            if key not in NOT_METRICS and isinstance(value, (int, float)) and not isinstance(value, bool):
                epochs, values = result.setdefault(key, ([], []))
                epochs.append(record["epoch"])
                values.append(value)
    return result


def plot(records, output, title):
    """One PNG with a panel per metric; returns ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(records)
    columns = min(3, len(data))
    rows = math.ceil(len(data) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis, (name, (epochs, values)) in zip(axes.flat, data.items(), strict=False):
        best = (min if name in LOWER_IS_BETTER else max)(range(len(values)), key=values.__getitem__)
        axis.plot(epochs, values, marker="o", markersize=3)
        axis.plot(epochs[best], values[best], marker="*", markersize=12, color="tab:red",
                  label=f"best {values[best]:.4g} (epoch {epochs[best]})")
        axis.set(title=name, xlabel="epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in list(axes.flat)[len(data):]:
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output


def main(argv=None):
    parser = ArgumentParser(prog="python -m utils.plot_metrics", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="the run folder (holds metrics.jsonl)")
    parser.add_argument("--output", default=None, help="PNG to write (default: RUN_DIR/metrics.png)")
    args = parser.parse_args(argv)
    path = os.path.join(args.run_dir, METRICS_JSONL)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit(f"{parser.prog}: error: drawing needs matplotlib: pip install matplotlib")
    try:
        records = read_records(path)
    except (OSError, ValueError) as err:
        sys.exit(f"{parser.prog}: error: cannot read {path} ({err}): is it a metrics.jsonl of train_ddgan.py?")
    if not curves(records):
        sys.exit(f"{parser.prog}: error: no metric values in {path}: train with --metrics (see train_ddgan.py --help)")
    output = args.output or os.path.join(args.run_dir, "metrics.png")
    try:
        plot(records, output, os.path.basename(os.path.normpath(args.run_dir)))
    except OSError as err:
        sys.exit(f"{parser.prog}: error: cannot write {output} ({err.strerror}): choose another --output")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
