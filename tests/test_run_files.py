"""What a run leaves behind, met again by the next command: the records of metrics.jsonl (a resumed
run and the plot read them back), the generator inside content.pth, and the lock of a run whose
process was killed while its children lived on.  The refusals are rows of test_bad_inputs.py; here
are the cases that go on, and the rules behind both."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import train_ddgan
from score_sde import checkpoint
from tests.conftest import REPO, TINY_TRAIN
from training.evaluation import BEST, METRICS_JSONL, TrainingMetrics, read_records
from utils import plot_metrics
from utils.locks import FolderLock

RUN = ("dd_gan", "stacked_digits", "experiment_cifar_default")
RECORD = {"epoch": 0, "step": 4, "time": "2026-12-06T10:00:00+0000", "seconds": 0.5, "modes": 3, "kl": 5.9,
          "checkpoint": "netG_0.pth"}


def write_lines(path, *lines, end="\n"):
    """``lines`` (dicts as JSON, text as it is) one per line; ``end`` after the last ("" = cut short)."""
    path.write_text("\n".join(json.dumps(line) if isinstance(line, dict) else line for line in lines) + end)
    return path


# ----------------------------------------------------------------------------- reading the records

def test_records_read_back_in_order(tmp_path):
    path = write_lines(tmp_path / METRICS_JSONL, RECORD, "", {**RECORD, "epoch": 1, "checkpoint": None})
    assert [record["epoch"] for record in read_records(path)] == [0, 1]
    assert read_records(tmp_path / "absent.jsonl") == []


def test_a_last_line_cut_short_is_skipped_with_a_warning(tmp_path, capsys):
    """What a crash while appending leaves: the last line without its newline."""
    path = write_lines(tmp_path / METRICS_JSONL, RECORD, '{"epoch": 1, "step": 8, "kl', end="")
    assert read_records(path) == [RECORD]
    assert capsys.readouterr().err == f"warning: {path} line 2 was cut short (the run stopped while writing it): " \
                                      "skipped\n"
    assert read_records(path, warn=False) == [RECORD] and capsys.readouterr().err == ""


@pytest.mark.parametrize("lines, message", [
    ([RECORD, "{oops"], "line 2 is not JSON: correct or delete the line"),  # with its newline: not a crash
    (["", "{oops", RECORD], "line 2 is not JSON"),
    (["[1, 2]"], "line 1 is not a JSON object"),
    ([{**RECORD, "epoch": "0"}], 'line 1 has no "epoch" (a whole number >= 0)'),
    ([{**RECORD, "epoch": 1.5}], 'line 1 has no "epoch"'),
    ([{**RECORD, "epoch": -1}], 'line 1 has no "epoch"'),
    ([{"kl": 1.0}], 'line 1 has no "epoch"'),
    ([RECORD, {**RECORD, "kl": "6.91"}], 'line 2: "kl" is "6.91", not a number'),
    ([{**RECORD, "modes": True}], 'line 1: "modes" is true, not a number'),
    ([{**RECORD, "modes": None}], 'line 1: "modes" is null, not a number'),
    ([{**RECORD, "time": 3}], 'line 1: "time" is 3, not text'),
])
def test_records_that_cannot_be_read_back_name_the_line(tmp_path, lines, message):
    path = write_lines(tmp_path / METRICS_JSONL, *lines)
    with pytest.raises(ValueError, match=f"^{path} {message}".replace("(", r"\(").replace(")", r"\)")):
        read_records(path)


def test_nan_and_infinity_are_read_with_a_warning(tmp_path, capsys):
    path = write_lines(tmp_path / METRICS_JSONL, {**RECORD, "kl": math.nan}, {**RECORD, "epoch": 1, "fid": math.inf})
    first, second = read_records(path)
    assert math.isnan(first["kl"]) and second["fid"] == math.inf
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {path} line 1: kl is NaN, which never counts as the best",
        f"warning: {path} line 2: fid is Infinity, which never counts as the best"]


def test_a_folder_in_place_of_the_records(tmp_path):
    (tmp_path / METRICS_JSONL).mkdir()
    with pytest.raises(ValueError, match="is a folder where the run writes a file: remove or rename it"):
        read_records(tmp_path / METRICS_JSONL)


def evaluations(key, higher_is_better, *values):
    """The best-keeping part of TrainingMetrics over records with ``values`` of ``key`` (None: no such field)."""
    metrics = TrainingMetrics.__new__(TrainingMetrics)
    metrics.key, metrics.higher_is_better = key, higher_is_better
    metrics.records = [{"epoch": epoch, **({} if value is None else {key: value})}
                       for epoch, value in enumerate(values)]
    return metrics


def test_nan_never_counts_as_the_best():
    """Every comparison with NaN is false: kept as the best, it would freeze netG_best.pth for good."""
    assert evaluations("kl", False, math.nan, 6.9).best() == 6.9
    assert evaluations("kl", False, math.nan, 6.9).improves(6.0)
    assert not evaluations("kl", False, math.nan, 6.9).improves(7.0)
    assert evaluations("kl", False, math.nan).best() is None and evaluations("kl", False, math.nan).improves(6.9)
    assert evaluations("modes", True, math.nan, 3, math.inf).best() == 3
    assert not evaluations("kl", False).improves(math.nan)


def test_records_without_the_first_metric():
    """A run resumed with another first metric (records of other keys): nothing to beat, no KeyError."""
    assert evaluations("fid", False, None, None).best() is None


# ----------------------------------------------------------------------------- resuming over the records

@pytest.fixture(scope="module")
def trained_metrics_run(tmp_path_factory):
    """A finished tiny run (epochs 0..1, the modes metric after each, content.pth): its --save_dir."""
    save_dir = tmp_path_factory.mktemp("run")
    train_ddgan.main([*METRICS_RUN, "--save_dir", str(save_dir)])
    return save_dir


METRICS_RUN = [*TINY_TRAIN, "--num_epoch", "1", "--max_iters_per_epoch", "1", "--metrics", "modes",
               "--metrics_every", "1", "--metrics_samples", "50", "--save_content"]


@pytest.fixture
def metrics_run(trained_metrics_run, tmp_path):
    """A copy of the trained run: its --save_dir."""
    shutil.copytree(trained_metrics_run, tmp_path / "runs")
    return tmp_path / "runs"


def resumed(save_dir, lines, end="\n"):
    """Resume the run to epoch 2 after writing ``lines`` into its metrics.jsonl; its records after."""
    path = write_lines(save_dir.joinpath(*RUN, METRICS_JSONL), *lines, end=end)
    train_ddgan.main([*METRICS_RUN, "--save_dir", str(save_dir), "--resume", "--num_epoch", "2"])
    return read_records(path, warn=False)


def test_a_resume_skips_a_cut_last_line_and_goes_on(metrics_run, capsys):
    records = resumed(metrics_run, [{**RECORD, "kl": 9.0}, '{"epoch": 1, "st'], end="")
    epochs = [record["epoch"] for record in records]
    assert epochs[0] == 0 and epochs[-1] == 2 and epochs == sorted(set(epochs))  # epoch 1 may be evaluated again
    assert "metrics.jsonl line 2 was cut short (the run stopped while writing it): skipped" in capsys.readouterr().err


def test_a_nan_record_does_not_freeze_the_best_generator(metrics_run, capsys):
    records = resumed(metrics_run, [{**RECORD, "kl": math.nan}, {**RECORD, "epoch": 1, "kl": math.nan}])
    assert [record["epoch"] for record in records] == [0, 1, 2]
    assert "line 1: kl is NaN, which never counts as the best" in capsys.readouterr().err
    assert checkpoint.read(metrics_run.joinpath(*RUN, BEST))["epoch"] == 2


# ----------------------------------------------------------------------------- the plot

@pytest.fixture
def run_folder(tmp_path, monkeypatch):
    """``run/metrics.jsonl`` (two records) in the current folder ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    write_lines(tmp_path / "run" / METRICS_JSONL, RECORD, {**RECORD, "epoch": 1, "kl": 4.0})
    return tmp_path


@pytest.mark.parametrize("output, written", [
    (None, "run/metrics.png"), ("out/", "out/metrics.png"), ("out", "out/metrics.png"),
    ("new/", "new/metrics.png"), ("curves", "curves.png"), ("curves.pdf", "curves.pdf")])
def test_the_plot_goes_where_it_is_printed(run_folder, capsys, output, written):
    """A folder gets metrics.png (an existing one, or a path ending in /), a name without extension .png."""
    (run_folder / "out").mkdir()
    plot_metrics.main(["run", *(["--output", output] if output else [])])
    assert capsys.readouterr().out == f"wrote {written}\n"
    assert (run_folder / written).stat().st_size > 0


def test_the_records_file_may_be_given_for_the_run(run_folder, capsys):
    plot_metrics.main([f"run/{METRICS_JSONL}"])
    assert capsys.readouterr().out == "wrote run/metrics.png\n"


def test_the_plot_skips_a_cut_last_line(run_folder, capsys):
    write_lines(run_folder / "run" / METRICS_JSONL, RECORD, '{"epoch": 1, "kl"', end="")
    plot_metrics.main(["run"])
    captured = capsys.readouterr()
    assert captured.out == "wrote run/metrics.png\n"
    assert captured.err == f"warning: run/{METRICS_JSONL} line 2 was cut short (the run stopped while writing it): " \
                           "skipped\n"


def test_the_plot_marks_no_nan_as_the_best():
    assert plot_metrics.best_index("kl", [math.nan, 5.0, 6.0]) == 1
    assert plot_metrics.best_index("modes", [math.nan, 5, 6]) == 2
    assert plot_metrics.best_index("kl", [math.nan]) is None


# ----------------------------------------------------------------------------- content.pth as a generator

@pytest.fixture(scope="module", params=["ema", "plain"])
def finished_run(request, tmp_path_factory):
    """A finished tiny run (epochs 0..1) with content.pth, with or without --use_ema: its folder."""
    save_dir = tmp_path_factory.mktemp(request.param)
    ema = ["--use_ema", "--ema_decay", "0.5"] if request.param == "ema" else []
    train_ddgan.main([*TINY_TRAIN, "--save_dir", str(save_dir), "--num_epoch", "1", "--max_iters_per_epoch", "2",
                      "--save_content", *ema])
    return request.param, os.path.join(save_dir, *RUN)


def test_content_pth_gives_the_generator_of_the_last_epoch(finished_run, capsys):
    """The generator inside content.pth is the one netG_1.pth holds (EMA weights with --use_ema); a note
    says which weights were taken."""
    kind, folder = finished_run
    content, config = checkpoint.load_generator(os.path.join(folder, "content.pth"), "cpu")
    expected, _ = checkpoint.load_generator(os.path.join(folder, "netG_1.pth"), "cpu")
    weights = "the EMA weights" if kind == "ema" else "G's own weights (not an EMA)"
    assert capsys.readouterr().err == f"note: {folder}/content.pth is a training state: sampling {weights} after " \
                                      "epoch 1\n"
    assert config["image_size"] == 16
    for (name, ours), theirs in zip(content.state_dict().items(), expected.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs), name


# ----------------------------------------------------------------------------- a lock held by the dead

HOLDER = """
import os, sys, time
from utils.locks import FolderLock
lock = FolderLock(sys.argv[1], str, remove=True).acquire()
child = os.fork()  # as a DataLoader worker or a pool process is made
if child == 0:
    lock.release()  # in a child: neither lets the parent's lock go nor removes its file
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
time.sleep(60)
"""


def test_the_children_of_a_killed_job_do_not_keep_its_lock(tmp_path):
    """SIGKILL of a job whose forked children live on (DataLoader workers outlive it by seconds): the
    next job takes the lock at once, while they still run."""
    path = str(tmp_path / "job.lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, path], stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    child = int(holder.stdout.readline())
    try:
        time.sleep(0.2)  # the child has run its release()
        with pytest.raises(ValueError, match="busy: pid"):
            FolderLock(path, lambda who: f"busy: {who}").acquire()
        assert os.path.exists(path)
        holder.kill()
        holder.wait()
        os.kill(child, 0)  # still alive
        FolderLock(path, lambda who: f"busy: {who}").acquire().release()
    finally:
        holder.kill()
        holder.wait()
        os.kill(child, signal.SIGKILL)
