"""The Inception Score: on logits with known answers (metrics.inception_score), and the script
pytorch_fid/inception_score.py."""

import re

import numpy as np
import pytest
import torch

from metrics.evaluator import inception_outputs
from metrics.images import open_images, sample_source
from metrics.inception import InceptionV3
from metrics.registry import Options
from metrics.scores import inception_score_from_logits, split_bounds
from tests._data_formats import random_images, write_pngs
from tests.conftest import cli_env, one_error_line, run_command, run_commands

CONFIDENT = 1e4  # a logit margin that makes the softmax one-hot in float64


def one_hot_logits(classes, width=1008):
    """(len(classes), width) logits predicting ``classes`` with certainty."""
    logits = np.zeros((len(classes), width))
    logits[np.arange(len(classes)), classes] = CONFIDENT
    return logits


def test_uniform_predictions_score_one():
    mean, std = inception_score_from_logits(np.zeros((50, 1008)), splits=5)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_confident_predictions_spread_evenly_score_the_class_count():
    logits = one_hot_logits(np.tile(np.arange(10), 10))  # every split of 10 holds each class once
    mean, std = inception_score_from_logits(logits, splits=10)
    assert mean == pytest.approx(10.0) and std == pytest.approx(0.0, abs=1e-9)


def test_splits_and_their_spread():
    """One split sees a single class (score 1), the other four classes evenly (score 4)."""
    logits = one_hot_logits([7] * 8 + [0, 1, 2, 3] * 2)
    mean, std = inception_score_from_logits(logits, splits=2)
    assert (mean, std) == (pytest.approx(2.5), pytest.approx(1.5))


def test_a_hand_computed_score():
    """p(y|x) = (1, 0) and (1/2, 1/2): p(y) = (3/4, 1/4), KLs log(4/3) and (log(2/3) + log 2) / 2."""
    logits = np.full((2, 1008), -CONFIDENT)
    logits[0, 0] = 0.0
    logits[1, :2] = 0.0
    expected = np.exp((np.log(4 / 3) + 0.5 * (np.log(2 / 3) + np.log(2))) / 2)
    assert inception_score_from_logits(logits, splits=1) == (pytest.approx(expected), 0.0)


@pytest.mark.parametrize("count, splits, expected", [(10, 3, [0, 3, 6, 10]), (7, 7, list(range(8))),
                                                     (50000, 10, list(range(0, 50001, 5000)))])
def test_split_bounds(count, splits, expected):
    """Part i is [i N // s, (i + 1) N // s): 10 in 3 is 3, 3, 4 (np.array_split would make 4, 3, 3)."""
    assert split_bounds(count, splits) == expected


def test_uneven_splits_follow_the_bounds():
    """10 samples, 3 splits: the parts [0, 3), [3, 6), [6, 10) see 1, 1 and 2 classes (scores 1, 1, 2)."""
    logits = one_hot_logits([0, 0, 0, 1, 1, 1, 2, 2, 3, 3])
    mean, std = inception_score_from_logits(logits, splits=3)
    assert (mean, std) == (pytest.approx(4 / 3), pytest.approx(np.std([1, 1, 2])))


def test_only_the_first_1000_classes_count():
    logits = np.zeros((20, 1008))
    logits[:10, 1000 + np.arange(8)] = CONFIDENT  # would make the score larger if it counted
    assert inception_score_from_logits(logits, splits=2)[0] == pytest.approx(1.0)


def test_more_splits_than_samples():
    with pytest.raises(ValueError, match="3 samples cannot make 10 splits"):
        inception_score_from_logits(np.zeros((3, 1008)))


def test_samples_npz_is_preferred(tmp_path):
    assert sample_source(tmp_path) == tmp_path
    np.savez(tmp_path / "samples.npz", samples=random_images(2))
    assert sample_source(tmp_path) == tmp_path / "samples.npz"


def test_script_prints_the_score_of_samples_npz(tmp_path):
    np.savez(tmp_path / "samples.npz", samples=random_images(4, seed=3))
    result = run_command("pytorch_fid/inception_score.py", "--sample_dir", tmp_path, "--splits", "2",
                         "--random-weights", "--num_workers", "0", "--device", "cpu", env=cli_env(tmp_path))
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"Inception Score = (\S+) ± (\S+)\n", result.stdout)
    assert match, result.stdout
    model = InceptionV3(random_weights=True)
    _, logits = inception_outputs(open_images(tmp_path / "samples.npz"), model, Options())
    expected = inception_score_from_logits(logits, 2)
    assert (float(match[1]), float(match[2])) == (pytest.approx(expected[0], abs=1e-4),
                                                  pytest.approx(expected[1], abs=1e-4))


def test_logits_come_from_the_fid_network():
    model = InceptionV3(random_weights=True)
    images = torch.from_numpy(random_images(2)).permute(0, 3, 1, 2) / 255
    dataset = list(images)
    _, logits = inception_outputs(dataset, model, Options(batch_size=2))
    with torch.no_grad():
        expected = model.fc(model(images)[0].flatten(1))
    assert logits.shape == (2, 1008)
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_script_bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    write_pngs(tmp_path / "three", random_images(3))
    script = "pytorch_fid/inception_score.py"
    three = [script, "--sample_dir", tmp_path / "three"]
    cases = [
        (["-m pytorch_fid.inception_score", "--sample_dir", tmp_path / "gone"], 1, "gone does not exist"),
        ([script, "--sample_dir", tmp_path / "empty"], 1, "no image files"),
        (three, 1, "is needs at least 10 samples (one per split), got 3"),
        ([*three, "--splits", "3", "--device", "cpu"], 1, "DDGAN_INCEPTION_WEIGHTS"),
    ]
    results = run_commands(*[command for command, _, _ in cases], env=cli_env(tmp_path))
    for result, (_, exit_code, message) in zip(results, cases, strict=True):
        line = one_error_line(result, exit_code, notices=True)
        assert line.startswith("inception_score: error:") and message in line, line
