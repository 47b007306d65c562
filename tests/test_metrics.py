"""The metrics package: the registry, and the Evaluator the scripts and the training loop call.

Most tests use a stand-in for the Inception network (tests._eval_helpers.FakeInception, 16-d
features, so FID needs no 2048 x 2048 square root); one runs the real network with random weights.
"""

import json
import math

import numpy as np
import pytest
import torch

from metrics import METRICS, Evaluator, MetricError, parse_metric_names
from metrics.inception import InceptionV3
from metrics.scores import (
    activation_statistics,
    calculate_frechet_distance,
    compute_precision_recall,
    inception_score_from_logits,
)
from tests._data_formats import random_images, write_pngs
from tests._eval_helpers import FakeInception, build_fake_inception, constant_digit_classifier
from utils import outputs

SIZE = 8


@pytest.fixture
def fake_network(monkeypatch):
    """Evaluators build FakeInception (16-d features) instead of the FID network."""
    build_fake_inception(monkeypatch, lambda **kwargs: FakeInception(SIZE, dims=16))
    return FakeInception(SIZE, dims=16)


def outputs_of(network, images):
    """(features, logits) of uint8 (N, H, W, 3) images, computed directly."""
    with torch.no_grad():
        features, logits = network.features_and_logits(torch.from_numpy(images).permute(0, 3, 1, 2) / 255)
    return features.double().numpy(), logits.double().numpy()


# The registry.

@pytest.mark.parametrize("text, names", [("fid,pr", ["fid", "pr"]), (" is , fid,is", ["is", "fid"]),
                                         ("modes,", ["modes"])])
def test_parse_metric_names(text, names):
    assert parse_metric_names(text) == names


@pytest.mark.parametrize("text, message", [("fid,psnr", "unknown metric 'psnr' in 'fid,psnr': choose from fid, is, "
                                                        "pr, modes"),
                                           (" , ", "no metric named")])
def test_bad_metric_names(text, message):
    with pytest.raises(MetricError, match=message):
        parse_metric_names(text)


def test_registry_rows():
    rows = {name: (m.name, m.needs_inception, m.needs_real, m.primary, m.higher_is_better)
            for name, m in METRICS.items()}
    assert rows == {"fid": ("fid", True, True, "fid", False), "is": ("is", True, False, "is", True),
                    "pr": ("pr", True, True, "recall", True), "modes": ("modes", False, False, "kl", False)}


# Scores.

def test_fid_is_pr_of_samples(fake_network):
    """Each number equals the formula on the network's outputs; the results are plain JSON numbers."""
    real, samples = random_images(12, SIZE, seed=1), random_images(10, SIZE, seed=2)
    evaluator = Evaluator("fid,is,pr", device="cpu", real=real, batch_size=4, splits=5)
    results = evaluator(samples)
    assert list(results) == ["fid", "is", "is_std", "precision", "recall"]
    (real_features, _), (features, logits) = outputs_of(fake_network, real), outputs_of(fake_network, samples)
    expected_fid = calculate_frechet_distance(*activation_statistics(features), *activation_statistics(real_features))
    assert results["fid"] == pytest.approx(expected_fid, rel=1e-4)
    assert (results["is"], results["is_std"]) == pytest.approx(inception_score_from_logits(logits, 5), rel=1e-5)
    expected_pr = compute_precision_recall(real_features, features, k=3)
    assert (results["precision"], results["recall"]) == pytest.approx(expected_pr)
    assert json.loads(json.dumps(results)) == results
    assert evaluator.primary == ("fid", False)
    assert evaluator.summaries(results)[0] == f"FID = {results['fid']:.4f}"


def test_real_side_from_a_folder_a_file_or_statistics(fake_network, tmp_path):
    real = random_images(6, SIZE, seed=3)
    np.save(tmp_path / "real.npy", real)
    write_pngs(tmp_path / "real", real)
    mu, sigma = activation_statistics(outputs_of(fake_network, real)[0])
    np.savez(tmp_path / "stats.npz", mu=mu, sigma=sigma)
    samples = random_images(5, SIZE, seed=4)
    scores = [Evaluator(["fid"], device="cpu", real=source)(samples)["fid"]
              for source in (real, tmp_path / "real", tmp_path / "real.npy", str(tmp_path / "stats.npz"))]
    assert scores == pytest.approx([scores[0]] * 4, rel=1e-5)


def test_the_network_is_built_once(monkeypatch):
    built = []
    build_fake_inception(monkeypatch, lambda **kwargs: built.append(kwargs) or FakeInception(SIZE))
    first = Evaluator(["is"], device="cpu", random_weights=True)
    second = Evaluator(["fid"], device="cpu", real=random_images(3, SIZE), random_weights=True)
    assert first.inception is second.inception and len(built) == 1


def test_inception_score_with_the_random_fid_network():
    """The real network (seeded random weights): logits and score of the samples, as computed directly."""
    samples = random_images(4, 16, seed=5)
    results = Evaluator(["is"], device="cpu", random_weights=True, splits=2)(samples)
    with torch.no_grad():
        logits = InceptionV3(random_weights=True).features_and_logits(
            torch.from_numpy(samples).permute(0, 3, 1, 2) / 255)[1]
    assert (results["is"], results["is_std"]) == pytest.approx(inception_score_from_logits(logits, 2), rel=1e-4)


def test_mode_coverage(tmp_path):
    classifier = constant_digit_classifier(tmp_path / "digits.pt")
    evaluator = Evaluator(["modes"], device="cpu", dataset="stacked_digits", mode_classifier=str(classifier))
    assert evaluator.inception is None and evaluator.digit_accuracy == 0.5 and evaluator.primary == ("kl", False)
    results = evaluator(random_images(7, 16))
    assert results == {"modes": 1, "kl": pytest.approx(math.log(1000))} and isinstance(results["modes"], int)


def test_evaluate_a_sample_folder(fake_network, tmp_path):
    """evaluate_path reads a sample folder's samples.npz, and refuses a folder that is not whole."""
    folder = tmp_path / "run"
    folder.mkdir()
    samples = random_images(10, SIZE, seed=6)
    np.savez(folder / "samples.npz", samples=samples)
    outputs.write_manifest(folder, complete=True, count=10)
    evaluator = Evaluator(["is"], device="cpu")
    assert evaluator.evaluate_path(folder) == evaluator(samples)
    outputs.write_manifest(folder, complete=False, count=10)
    with pytest.raises(MetricError, match="unfinished sampling run"):
        evaluator.evaluate_path(folder)


# What fails, and when: at construction for the inputs, at the call for the samples.

def test_missing_weights_fail_at_construction(offline):
    with pytest.raises(MetricError, match="pt_inception-2015-12-05-6726825d.pth not found"):
        Evaluator(["is"], device="cpu")


@pytest.mark.parametrize("names, real, options, message", [
    (["fid"], None, {}, "fid: no real images given"),
    (["pr"], "missing_dir", {}, "missing_dir does not exist"),
    (["fid"], "empty", {}, "no image files"),
    (["fid"], "nan_stats.npz", {}, "NaN or inf"),
    (["fid", "pr"], "stats.npz", {}, "pr needs real images, but .*stats.npz holds FID statistics"),
    (["pr"], np.zeros((3, SIZE, SIZE, 3), np.uint8), {}, r"pr needs at least 4 real images \(k = 3\), got 3"),
    (["fid"], np.full((3, SIZE, SIZE, 3), np.nan), {}, "the real images hold NaN or inf"),
    (["modes"], None, {"dataset": "cifar10"}, "defined for stacked_digits and stackmnist, not cifar10"),
    (["modes"], None, {"dataset": "stackmnist"}, "needs an MNIST classifier"),
    ("fid,ssim", None, {}, "unknown metric 'ssim'"),
])
def test_bad_inputs_fail_at_construction(fake_network, tmp_path, monkeypatch, names, real, options, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no cached MNIST classifier
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "nan_stats.npz", mu=np.full(16, np.nan), sigma=np.eye(16))
    np.savez(tmp_path / "stats.npz", mu=np.zeros(16), sigma=np.eye(16))
    with pytest.raises(MetricError, match=message) as info:
        Evaluator(names, device="cpu", real=real, **options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("samples, message", [
    (torch.zeros(10, SIZE, SIZE, 3, dtype=torch.uint8), "numpy array"),
    (np.full((10, SIZE, SIZE, 3), np.inf), "the samples hold NaN or inf"),
    (np.zeros((10, 3, SIZE, SIZE), np.uint8), "transpose"),
    (np.zeros((9, SIZE, SIZE, 3), np.uint8), r"is needs at least 10 samples \(one per split\), got 9"),
])
def test_bad_samples_fail_at_the_call(fake_network, samples, message):
    evaluator = Evaluator(["is"], device="cpu")
    with pytest.raises(MetricError, match=message):
        evaluator(samples)


def test_a_network_that_diverges_gives_an_error_not_nan(monkeypatch):
    build_fake_inception(monkeypatch, lambda **kwargs: FakeInception(SIZE, scale=math.nan))
    with pytest.raises(MetricError, match="is, is_std came out NaN or inf"):
        Evaluator(["is"], device="cpu", splits=2)(random_images(4, SIZE))
