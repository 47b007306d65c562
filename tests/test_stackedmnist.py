"""StackedMNIST on the real MNIST files (``shared/data``, see its README): the reader, the protocol's
classifier and the score of real stacks; and the benchmark driver (benchmarks/stackedmnist.py).

The classifier tests use the cached classifier that ``python -m metrics.mode_coverage --train_mnist``
makes (``$XDG_CACHE_HOME/ddgan/mnist_classifier_v1.pt``); where it is missing they make it there
(about 3 minutes on one core), so later sessions and the benchmark load it.
"""

import argparse
import json
import os

import numpy as np
import pytest
import torch

from benchmarks import stackedmnist as bench
from datasets_prep.stackmnist import StackedMNIST, mnist_present, read_mnist
from metrics import classifiers, scores
from metrics import mode_coverage as mc
from tests._eval_helpers import constant_digit_classifier
from tests.conftest import SHARED, TINY_MODEL, cli_env, config_flags, run_command
from utils.sampling import to_uint8

MNIST_ROOT = SHARED / "data"
TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # shared/data/README.md
MIN_MNIST_ACCURACY = 0.99  # measured: 0.9923 on the 10,000 test digits
REAL_STACKS = 26_000  # the protocol's count
MAX_REAL_KL = 0.03  # measured: 0.0239 (the first 26,000 stacks)
MAX_READING_KL = 0.003  # KL added by misreading, over the stacks' own labels


@pytest.fixture(scope="module")
def mnist_root():
    root = str(MNIST_ROOT)
    if not (mnist_present(root, train=True) and mnist_present(root, train=False)):
        pytest.skip(f"real MNIST not found in {MNIST_ROOT / 'MNIST' / 'raw'} (set DDGAN_SHARED to the folder "
                    "holding data/MNIST/raw)")
    return root


@pytest.fixture(scope="module")
def mnist_classifier(mnist_root):
    """The path of the protocol's classifier: the cache, trained into it once if missing."""
    path = classifiers.default_classifier_path("stackmnist")
    if not os.path.exists(path):
        mc.main(["--train_mnist", mnist_root])
    return path


def test_mnist_reader_on_the_real_files(mnist_root):
    images, labels = read_mnist(mnist_root, train=True)
    assert images.shape == (60_000, 28, 28) and images.dtype == np.uint8 and labels.shape == (60_000,)
    pixels = images.astype(np.float64) / 255
    assert pixels.mean() == pytest.approx(0.1307, abs=5e-5) and pixels.std() == pytest.approx(0.3081, abs=5e-5)
    assert np.bincount(labels).tolist() == TRAIN_CLASS_COUNTS
    test_images, test_labels = read_mnist(mnist_root, train=False)
    assert test_images.shape == (10_000, 28, 28) and np.bincount(test_labels, minlength=10).min() > 800


def test_classifier_accuracy_floor(mnist_root, mnist_classifier):
    model, recorded = classifiers.load_classifier(mnist_classifier, 28)
    accuracy = classifiers.accuracy(model, *classifiers.mnist_tensors(mnist_root, train=False))
    assert accuracy >= MIN_MNIST_ACCURACY
    assert recorded == pytest.approx(accuracy)


def test_real_stacks_score_every_mode(mnist_root, mnist_classifier):
    """26,000 training stacks at 32 px, 8-bit as samples are scored: every mode, and a KL no larger than the
    stacks' own labels give (MNIST's classes are not quite even) plus a little misreading."""
    dataset = StackedMNIST(mnist_root, 32, train=True)
    images = to_uint8(torch.stack([dataset[i][0] for i in range(REAL_STACKS)])).numpy()
    labels = dataset.labels[dataset.triplets[:REAL_STACKS]] @ np.array(classifiers.MODE_WEIGHTS)
    result = mc.evaluate_mode_coverage(images, "stackmnist", mnist_classifier)
    assert result["modes"] == 1000 and result["num_samples"] == REAL_STACKS
    assert result["kl"] < MAX_REAL_KL
    assert result["kl"] - scores.mode_coverage(labels)[1] < MAX_READING_KL


# ----------------------------------------------------------------------------- the benchmark driver

@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("1h30m", 5400), ("90s", 90), ("90", 90), ("0.5h", 1800),
                                           ("1m30s", 90)])
def test_wall_times(text, seconds):
    assert bench.duration(text) == seconds


@pytest.mark.parametrize("text", ["3x", "", "0m", "m", "-5m", "30 m"])
def test_bad_wall_times(text):
    with pytest.raises(argparse.ArgumentTypeError, match="wall time"):
        bench.duration(text)


@pytest.mark.parametrize("done, last, every", [(2, 10, 3), (2, 9, 3), (0, 5, 1), (2, 3, 8), (4, 40, 5)])
def test_evaluation_count(done, last, every):
    expected = [epoch for epoch in range(done + 1, last + 1) if epoch % every == 0 or epoch == last]
    assert bench.evaluations_after(done, last, every) == len(expected)


@pytest.mark.parametrize("left, per_epoch, per_evaluation", [(1500, 20, 90), (600, 15, 20), (100, 1, 60),
                                                             (50, 10, 1), (1700, 0.3, 0.5)])
def test_plan_is_the_longest_that_fits(left, per_epoch, per_evaluation):
    last, every = bench.plan(left, per_epoch, per_evaluation, done=2)
    evaluations = bench.evaluations_after(2, last, every)

    def cost(last, every):
        return (last - 2) * per_epoch + bench.evaluations_after(2, last, every) * per_evaluation

    assert cost(last, every) <= left
    assert evaluations <= bench.EVALUATIONS
    assert evaluations == 1 or evaluations * per_evaluation <= bench.EVALUATION_SHARE * left + per_evaluation
    longer = last + 1
    assert cost(longer, max(1, -(-(longer - 2) // max(1, evaluations)))) > left or evaluations < bench.EVALUATIONS


def test_plan_without_time_for_an_epoch():
    assert bench.plan(30, per_epoch=40, per_evaluation=5, done=2) is None
    assert bench.plan(30, per_epoch=10, per_evaluation=25, done=2) is None  # an epoch, but not its evaluation


def record(epoch, step, clock, seconds, modes=10, kl=5.0):
    return {"epoch": epoch, "step": step, "time": f"2026-01-01T00:{clock // 60:02d}:{clock % 60:02d}+0000",
            "seconds": seconds, "modes": modes, "kl": kl}


def test_probe_timings_and_curve(tmp_path):
    started = bench.timestamp(record(0, 0, 0, 0))
    first = record(0, 25, 70, 40.0)  # 10 s to start, 20 s for epoch 0, 40 s evaluating it, 20 s per epoch
    for epoch, clock in ((0, 30), (1, 90), (2, 110)):
        (tmp_path / f"sample_discrete_epoch_{epoch}.png").write_bytes(b"")
        os.utime(tmp_path / f"sample_discrete_epoch_{epoch}.png", (started + clock, started + clock))
    per_epoch, per_evaluation, startup = bench.probe_timings(str(tmp_path), first, started)
    assert (per_epoch, per_evaluation, startup) == (20.0, 40.0, 10.0)
    rows = bench.curve([first, record(4, 125, 200, 30.0, 900, 0.5)], started)
    assert rows == [(0, 25, 30.0, 40.0, 10, 5.0), (4, 125, 130.0, 30.0, 900, 0.5)]
    assert bench.format_curve(rows).splitlines()[2].split() == ["4", "125", "130", "900", "0.500"]


def benchmark(*argv, env):
    return run_command("benchmarks/stackedmnist.py", *argv, env=env)


def test_dry_prints_the_commands(tmp_path):
    result = benchmark("cpu", "30m", "--datadir", tmp_path / "data", "--dry", "--", "--seed", "7",
                       env=cli_env(tmp_path, XDG_CACHE_HOME=tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    prepare, probe, rest = result.stdout.splitlines()
    assert prepare.endswith(f"-m metrics.mode_coverage --train_mnist {tmp_path / 'data'}")  # no classifier cached
    assert "--dataset stackmnist" in probe and "--image_size 16" in probe and "--metrics modes" in probe
    assert "--metrics_samples 26000" in probe and probe.endswith("--stop_after_epoch 2 --seed 7")
    assert rest.endswith("--resume --num_epoch N --metrics_every E --seed 7")
    assert not (tmp_path / "saved_info").exists()


def test_refuses_what_would_stop_the_run(tmp_path):
    (tmp_path / "runs" / "dd_gan" / "stackmnist" / "mine").mkdir(parents=True)
    result = benchmark("gpu", "10m", "--save_dir", tmp_path / "runs", "--exp", "mine", env=cli_env(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().endswith("mine exists: pass another --exp, or delete it to run again")
    result = benchmark("cpu", "10m", "--datadir", tmp_path, "--save_dir", tmp_path / "runs", env=cli_env(tmp_path))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (f"benchmarks/stackedmnist.sh: error: MNIST is not in {tmp_path / 'MNIST' / 'raw'}: "
                             "pass --datadir, the folder that holds MNIST/raw\n")


def test_tiny_run_on_stacked_digits(tmp_path):
    """The whole driver in 30 s: the probe, the plan, the resumed rest, the table and the curve."""
    classifier = constant_digit_classifier(tmp_path / "digits.pt")  # the scores do not matter here
    tiny = (*config_flags(TINY_MODEL), "--batch_size", "4", "--max_iters_per_epoch", "2", "--stacked_digits_length",
            "64", "--metrics_samples", "40", "--metrics_batch_size", "40", "--mode_classifier", classifier)
    result = benchmark("cpu", "30s", "--dataset", "stacked_digits", "--save_dir", tmp_path / "runs", "--exp", "t",
                       "--plot", tmp_path / "curve.png", "--", *tiny, env=cli_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "probe: " in result.stdout and " --resume --num_epoch " in result.stdout
    run = tmp_path / "runs" / "dd_gan" / "stacked_digits" / "t"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r["epoch"] for r in records]
    assert epochs[0] == 0 and epochs[-1] > bench.PROBE_EPOCHS and len(epochs) >= 2
    assert json.loads((run / "args.json").read_text())["num_epoch"] == epochs[-1]  # the plan's last epoch
    table = result.stdout[result.stdout.index("epoch  iterations"):].splitlines()
    assert [int(line.split()[0]) for line in table[1:len(epochs) + 1]] == epochs
    assert f"cpu recipe: {records[-1]['step']} iterations" in result.stdout
    assert (tmp_path / "curve.png").stat().st_size > 0
