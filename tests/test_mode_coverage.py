"""The mode-coverage benchmark (metrics.mode_coverage): the counter, the digit classifiers, stackmnist
plumbing, CLI errors."""

import math

import numpy as np
import pytest
import torch

from datasets_prep.digits import StackedDigits
from datasets_prep.stackmnist import StackedMNIST
from metrics import MetricError, classifiers, scores
from metrics import mode_coverage as mc
from tests._data_formats import mnist_like_digits, write_mnist
from tests.conftest import cli_env, run_command

MIN_DIGIT_ACCURACY = 0.95  # measured: 0.981 on the generator half
MIN_STACK_ACCURACY = 0.85  # three digits right at once (measured: 0.92)


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory):
    """The digits classifier, trained once for this module into a temporary cache."""
    path = str(tmp_path_factory.mktemp("cache") / "digits.pt")
    classifiers.digits_classifier(path, verbose=False)
    return path


def stacked_batch(count, size=32, train=True):
    dataset = StackedDigits(size, length=count, train=train, seed=7)
    images = torch.stack([dataset[i][0] for i in range(count)])
    return images, torch.tensor([dataset[i][1] for i in range(count)])


def test_every_mode_once_is_perfect():
    assert scores.mode_coverage(torch.arange(1000)) == (1000, 0.0)
    assert scores.mode_coverage(np.repeat(np.arange(1000), 3)) == (1000, 0.0)


def test_one_mode_is_log_1000():
    modes, kl = scores.mode_coverage(torch.full((500,), 123))
    assert modes == 1 and kl == pytest.approx(math.log(1000))


def test_two_even_modes():
    modes, kl = scores.mode_coverage([5, 900, 5, 900])
    assert modes == 2 and kl == pytest.approx(math.log(500))


@pytest.mark.parametrize("ids", [[], [1000], [-1, 3]])
def test_bad_mode_ids(ids):
    with pytest.raises(MetricError, match=r"non-empty list of integers in \[0, 1000\)"):
        scores.mode_coverage(ids)


def test_classifier_accuracy_on_unseen_digits(classifier_path):
    model, accuracy = classifiers.load_classifier(classifier_path, 8)
    assert accuracy >= MIN_DIGIT_ACCURACY
    images, labels = classifiers.digits_split("generator")
    assert classifiers.accuracy(model, images[:, None], labels) == pytest.approx(accuracy)


def modes_of(images, reader):
    """Mode ids of stacked images in any layout ``as_images`` takes, read by ``reader``."""
    return classifiers.read_modes(reader, classifiers.as_images(images))


def test_real_stacked_digits_are_read(classifier_path):
    reader = classifiers.StackedReader(classifiers.load_classifier(classifier_path, 8)[0], 8)
    images, labels = stacked_batch(400)
    ids = modes_of(images, reader)
    assert ids.min() >= 0 and ids.max() < 1000
    assert (ids == labels).float().mean() >= MIN_STACK_ACCURACY
    as_uint8_nhwc = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert (modes_of(as_uint8_nhwc, reader) == ids).float().mean() > 0.97


def test_evaluate_real_data_covers_the_modes(classifier_path):
    images, _ = stacked_batch(5000, size=16)
    result = mc.evaluate_mode_coverage(images, "stacked_digits", classifier_path)
    assert result["num_samples"] == 5000 and result["classifier_accuracy"] >= MIN_DIGIT_ACCURACY
    assert result["modes"] >= 960  # 5000 uniform draws hit ~993 of 1000
    assert result["kl"] < 0.3
    collapsed = mc.evaluate_mode_coverage(images[:1].repeat(200, 1, 1, 1), "stacked_digits", classifier_path)
    assert collapsed["modes"] == 1 and collapsed["kl"] == pytest.approx(math.log(1000))


def test_cached_classifier_is_reused(classifier_path, monkeypatch):
    monkeypatch.setattr(classifiers, "train_digits_classifier", lambda: pytest.fail("retrained a cached classifier"))
    first, _ = classifiers.digits_classifier(classifier_path)
    second, _ = classifiers.digits_classifier(classifier_path)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_default_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert classifiers.default_classifier_path() == str(tmp_path / "ddgan" / "digits_classifier_v1.pt")
    assert classifiers.default_classifier_path("stackmnist") == str(tmp_path / "ddgan" / "mnist_classifier_v1.pt")


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    """MNIST-format files made of scikit-learn digits scaled to 28 px."""
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(root, *mnist_like_digits(800), train=True)
    write_mnist(root, *mnist_like_digits(300, offset=800), train=False)
    return root


def test_stackmnist_with_trained_and_exported_classifiers(mnist_root, tmp_path):
    model, accuracy = classifiers.train_mnist_classifier(str(mnist_root), epochs=8)
    assert accuracy > 0.8
    ours = str(tmp_path / "mnist.pt")
    classifiers.save_classifier(ours, model, 28, accuracy)
    scripted = str(tmp_path / "mnist_script.pt")
    with pytest.warns(FutureWarning):
        torch.jit.save(torch.jit.script(model), scripted)
    dataset = StackedMNIST(str(mnist_root), 32, train=False)
    images = torch.stack([dataset[i][0] for i in range(60)])
    labels = torch.tensor([dataset[i][1] for i in range(60)])
    ids = modes_of(images, classifiers.reader_for("stackmnist", ours)[0])
    assert (ids == labels).float().mean() > 0.5
    assert torch.equal(modes_of(images, classifiers.reader_for("stackmnist", scripted)[0]), ids)
    assert mc.evaluate_mode_coverage(images, "stackmnist", scripted)["classifier_accuracy"] is None


def test_reader_errors(tmp_path, classifier_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = tmp_path / "ddgan" / "mnist_classifier_v1.pt"
    with pytest.raises(MetricError, match=f"needs an MNIST classifier, and {cached} does not exist: make it once "
                                          r"with python -m metrics.mode_coverage --train_mnist DATADIR \(the folder "
                                          r"holding MNIST/raw\), or pass --mode_classifier FILE$"):
        mc.evaluate_mode_coverage(torch.zeros(2, 3, 32, 32), "stackmnist")
    with pytest.raises(MetricError, match="defined for stacked_digits and stackmnist, not cifar10"):
        mc.evaluate_mode_coverage(torch.zeros(2, 3, 32, 32), "cifar10")
    with pytest.raises(MetricError, match="not found"):
        classifiers.reader_for("stackmnist", str(tmp_path / "none.pt"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(MetricError, match="cannot load the classifier .*junk.pt"):
        classifiers.reader_for("stackmnist", str(tmp_path / "junk.pt"))
    with pytest.raises(MetricError, match="is a 8 px digit classifier, this data set needs 28 px"):
        classifiers.reader_for("stackmnist", classifier_path)
    with pytest.raises(MetricError, match=r"expected images of shape \(N, 3, H, W\)"):
        classifiers.as_images(np.zeros((4, 32, 32)))


def test_non_finite_samples_are_refused():
    images = np.zeros((2, 3, 8, 8), np.float32)
    images[1, 0, 0, 0] = np.nan
    with pytest.raises(MetricError, match="NaN or inf"):
        modes_of(images, lambda x: pytest.fail("classified NaN images"))


def test_classifier_cache_that_cannot_be_written(tmp_path, monkeypatch):
    """Checked before the seconds of training, not after."""
    monkeypatch.setattr(classifiers, "train_digits_classifier", lambda: pytest.fail("trained for nothing"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="lies below the file"):
        classifiers.digits_classifier(str(tmp_path / "file" / "digits.pt"))
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(ValueError, match="folder.pt is a folder: give a file name"):
        classifiers.digits_classifier(str(tmp_path / "folder.pt"))
    with pytest.raises(MetricError, match="folder.pt is a folder: check --mode_classifier"):
        classifiers.load_classifier(str(tmp_path / "folder.pt"), 28)


def test_cli_reports_coverage_of_saved_samples(tmp_path, classifier_path):
    images, _ = stacked_batch(300)
    np.save(tmp_path / "samples.npy", ((images + 1) * 127.5).round().to(torch.uint8).numpy())
    result = run_command("-m metrics.mode_coverage", "--samples", tmp_path / "samples.npy",
                         "--mode_classifier", classifier_path)
    assert result.returncode == 0, result.stderr
    assert "300 samples" in result.stdout and "modes " in result.stdout


def test_cli_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no cached MNIST classifier, nothing written elsewhere
    np.save(tmp_path / "samples.npy", np.zeros((2, 3, 32, 32), np.uint8))
    result = run_command("-m metrics.mode_coverage", "--dataset", "stackmnist", "--samples", tmp_path / "samples.npy",
                         env=cli_env(XDG_CACHE_HOME=tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith("python -m metrics.mode_coverage: error: stackmnist mode coverage needs an "
                                    "MNIST classifier")
    with pytest.raises(SystemExit, match="error: .*none.npy does not exist: give a .npy/.npz sample array"):
        mc.main(["--samples", str(tmp_path / "none.npy"), "--mode_classifier", str(tmp_path / "samples.npy")])
    with pytest.raises(SystemExit, match=r"error: .*t10k-images-idx3-ubyte is missing: put MNIST's idx files in"):
        mc.main(["--train_mnist", str(tmp_path)])
    assert not (tmp_path / "ddgan").exists()


@pytest.mark.parametrize("name, side, fix", [("digits_classifier_v1.pt", 8, r"trained again \(seconds\) on first use"),
                                             ("mnist_classifier_v1.pt", 28, "--train_mnist DATADIR")])
def test_a_damaged_cache_file_is_named_with_its_fix(tmp_path, monkeypatch, capfd, name, side, fix):
    """One line naming the cache file, and nothing that torch's loaders would print about it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "ddgan").mkdir()
    (tmp_path / "ddgan" / name).write_bytes(b"garbage")
    with pytest.raises(MetricError, match=f"{tmp_path}/ddgan/{name} .*: the cache file is damaged: delete it; .*{fix}"):
        classifiers.load_classifier(str(tmp_path / "ddgan" / name), side)
    assert capfd.readouterr().err == ""


def test_train_mnist_fills_the_cache_that_stackmnist_reads(mnist_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    mc.main(["--train_mnist", str(mnist_root)])
    cached = tmp_path / "ddgan" / "mnist_classifier_v1.pt"
    accuracy = classifiers.load_classifier(str(cached), 28)[1]
    assert f"accuracy {accuracy:.4f} on the t10k digits" in capsys.readouterr().out
    reader, reported = classifiers.reader_for("stackmnist")  # no --mode_classifier: the cache
    assert reported == accuracy and isinstance(reader, classifiers.StackedReader)


def test_shifts_move_whole_digits():
    images, _ = mnist_like_digits(64)  # ink within rows and columns 4..23: a 2 px shift keeps all of it
    x = torch.from_numpy(images.astype(np.float32) / 255)[:, None]
    generator = torch.Generator().manual_seed(0)
    shifted = classifiers._shift(x, generator)
    assert shifted.shape == x.shape
    assert torch.allclose(shifted.sum((1, 2, 3)), x.sum((1, 2, 3)))
    moved = [not torch.equal(a, b) for a, b in zip(shifted, x, strict=True)]
    assert 40 < sum(moved) < 64  # 24 of 25 offsets move a digit
    for a, b in zip(shifted[:, 0], x[:, 0], strict=True):  # each one a plain translation
        assert any(torch.equal(torch.roll(b, (dy, dx), (0, 1)), a) for dy in range(-2, 3) for dx in range(-2, 3))


def test_mnist_augmentation_round_trips_two_thirds_in_order():
    images, _ = mnist_like_digits(30)
    x = torch.from_numpy(images.astype(np.float32) / 255)[:, None]
    augmented = classifiers._mnist_augment(x, torch.Generator().manual_seed(0))
    shifted = classifiers._shift(x, torch.Generator().manual_seed(0))  # the same draws: what the round trips start from
    assert augmented.shape == x.shape and augmented.min() >= 0 and augmented.max() <= 1 + 1e-6
    assert torch.equal(augmented[:10], shifted[:10])
    for part in (slice(10, 20), slice(20, 30)):  # 16 px, then 32 px and back: blurred, not moved
        difference = (augmented[part] - shifted[part]).abs().mean((1, 2, 3))
        assert (difference > 0).all() and (difference < 0.05).all()
