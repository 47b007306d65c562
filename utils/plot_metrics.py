"""Draw the metric curves of a training run: ``python -m utils.plot_metrics RUN_DIR [--output PNG]``.

A command line (it sits above the packages it reads: training's records, the metrics registry's
sense of better).

Reads ``RUN_DIR/metrics.jsonl`` (written by train_ddgan.py --metrics; RUN_DIR may also be that
file) and draws every number against the epoch, one panel per metric, into ``RUN_DIR/metrics.png``
(or --output).  The best value of each curve is marked.  The records are read as a resumed run
reads them (``training.evaluation.read_records``: a line cut short by a crash is skipped with a
warning).  Needs matplotlib (``pip install matplotlib``).
"""

import math
import os
import sys

from metrics.registry import higher_is_better
from training.evaluation import METRICS_JSONL, read_records
from utils import files, outputs
from utils.argtypes import ArgumentParser

# Record fields that are not metric values.
NOT_METRICS = ("epoch", "step", "time", "seconds", "checkpoint")
DEFAULT_OUTPUT = "metrics.png"


def curves(records):
    """{metric: ([epochs], [values])} of ``records`` (as ``read_records`` gives them: every field not in
    NOT_METRICS is a number), in file order."""
    result = {}
    for record in records:
        for key, value in record.items():
            if key not in NOT_METRICS:
                epochs, values = result.setdefault(key, ([], []))
                epochs.append(record["epoch"])
                values.append(value)
    return result


def best_index(name, values):
    """The index of the best of ``values`` of the result ``name`` (None if none is finite, NaN never wins,
    or if the registry ranks nothing by it)."""
    finite = [index for index, value in enumerate(values) if math.isfinite(value)]
    higher = higher_is_better(name)
    if not finite or higher is None:
        return None
    return (max if higher else min)(finite, key=values.__getitem__)


def plot(records, output, title):
    """One image with a panel per metric; returns ``output``.  NaN values leave a gap and are never the best."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(records)
    columns = min(3, len(data))
    rows = math.ceil(len(data) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis, (name, (epochs, values)) in zip(axes.flat, data.items(), strict=False):
        axis.plot(epochs, values, marker="o", markersize=3)
        best = best_index(name, values)
        if best is not None:
            axis.plot(epochs[best], values[best], marker="*", markersize=12, color="tab:red",
                      label=f"best {values[best]:.4g} (epoch {epochs[best]})")
            axis.legend(fontsize=8)
        axis.set(title=name, xlabel="epoch")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(data):]:
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output


def records_path(run):
    """The metrics.jsonl of ``run`` (a run folder, or the file itself); ValueError if there is none."""
    if not os.path.exists(run):
        raise ValueError(f"{run} does not exist: give the run folder of a train_ddgan.py --metrics run")
    path = run if os.path.isfile(run) else os.path.join(run, METRICS_JSONL)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not the run's metrics.jsonl")
    if not os.path.isfile(path):
        raise ValueError(f"no {METRICS_JSONL} in {run}: train with --metrics (see train_ddgan.py --help)")
    return path


def output_path(output, records_file):
    """The image file to write: --output, in a folder (an existing one, or a path ending in /) as
    metrics.png, and with .png added when it has no extension.  ValueError for a format matplotlib
    cannot write, or a path that is the records file or cannot be written."""
    from matplotlib.figure import Figure

    if not output or output.endswith(os.sep) or os.path.isdir(output):
        folder = output or os.path.dirname(records_file)
        output = os.path.join(folder, DEFAULT_OUTPUT)
    elif not os.path.splitext(output)[1]:
        output += ".png"
    kind = os.path.splitext(output)[1][1:].lower()
    if kind not in Figure().canvas.get_supported_filetypes():
        raise ValueError(f"--output {output}: matplotlib cannot write .{kind} files; give a .png (or .pdf, .svg) name")
    outputs.check_not_input(output, {METRICS_JSONL: records_file}, "--output")
    files.check_output_file(output, "--output", overwrite=True)
    return output


def main(argv=None):
    parser = ArgumentParser(prog="python -m utils.plot_metrics", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="the run folder (holds metrics.jsonl), or its metrics.jsonl")
    parser.add_argument("--output", default=None, help="image to write (default: RUN_DIR/metrics.png; a folder: "
                        "FOLDER/metrics.png; no extension: .png added)")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit(f"{parser.prog}: error: drawing needs matplotlib: pip install matplotlib")
    with files.user_errors(parser.prog, whole=True):
        path = records_path(args.run_dir)
        records = read_records(path)
        if not curves(records):
            raise ValueError(f"no metric values in {path}: train with --metrics (see train_ddgan.py --help)")
        output = output_path(args.output, path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        plot(records, output, os.path.basename(os.path.dirname(os.path.abspath(path))))
    except OSError as err:
        sys.exit(f"{parser.prog}: error: cannot write {output} ({err.strerror}): choose another --output")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
