"""The digit classifiers of the modes metric (the StackedMNIST protocol) and the reader of stacked images.

Each channel of a generated (3, H, W) image is read by a digit classifier; the triplet
(d_R, d_G, d_B) is one of 1,000 modes, id 100 d_R + 10 d_G + d_B (``read_modes``).  The counting
(modes hit, reverse KL) is ``metrics.scores.mode_coverage``; the command line, ``metrics.mode_coverage``.

Classifiers:
- ``stacked_digits``: a small CNN on 8x8 digits, trained here on the *held-out* half of
  scikit-learn's digits (the GAN trains on the other half, on which the accuracy is
  reported) and cached, by default in ``$XDG_CACHE_HOME/ddgan`` (``~/.cache/ddgan``).
  Channels are brought back to 8x8 by area averaging; training also sees digits taken
  up to 16/32/64 px and back, and brightness/noise jitter, so it reads generator output.
- ``stackmnist``: the same CNN at 28 px, trained with ``--train_mnist`` on MNIST's 60,000
  training digits (shifts of up to 2 px; two thirds taken to 16 or 32 px and back, as the
  channels of samples reach it), once, into the same cache (no weights ship, nothing is
  downloaded); its accuracy is on the 10,000 test digits.  It is not trained on first use
  (that takes minutes and needs the data): without it, the metric stops with the command
  that makes it.  ``--mode_classifier`` may instead name a TorchScript or torch.export
  (.pt2) file: it receives (B, 1, 28, 28) floats in [0, 1] (channels resized to 28 px,
  bilinear, antialiased) and returns (B, 10) logits; put any other normalisation inside
  the exported model.
"""

import contextlib
import logging
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datasets_prep.digits import DIGITS_SIDE, digits_split, upsample
from datasets_prep.stackmnist import read_mnist
from metrics.errors import MetricError, metric_errors
from metrics.images import pixel_range
from utils import files
from utils.files import atomic_save

MODE_WEIGHTS = (100, 10, 1)  # mode id = 100 d_R + 10 d_G + d_B
MNIST_SIDE = 28
CLASSIFIER_VERSION = 1
ROUND_TRIP_SIZES = (16, 32, 64)
# The MNIST classifier's recipe: 5 epochs of batch 128, one-cycle Adam up to 2e-3, shifts of up to 2 px,
# two thirds of each batch taken to 16 or 32 px (the sizes stackmnist trains at) and back.
MNIST_EPOCHS = 5
MNIST_MAX_LR = 2e-3
MNIST_SHIFT = 2
MNIST_ROUND_TRIPS = (16, 32)
CACHE_NAMES = {"stacked_digits": "digits", "stackmnist": "mnist"}


def default_classifier_path(dataset="stacked_digits"):
    """Where the data set's digit classifier is cached unless a path is given."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "ddgan", f"{CACHE_NAMES[dataset]}_classifier_v{CLASSIFIER_VERSION}.pt")


def digit_cnn(side):
    """(B, 1, side, side) in [0, 1] -> (B, 10) logits; side 8 (digits) or 28 (MNIST)."""
    pools = 1 if side <= DIGITS_SIDE else 2
    front = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU()] + [nn.MaxPool2d(2)] * (pools - 1)
    flat = 64 * (side // 2 ** pools) ** 2
    return nn.Sequential(*front, nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(flat, 128), nn.ReLU(), nn.Linear(128, 10))


def _round_trips(images):
    """(n, 8, 8) digits -> (k n, 1, 8, 8): as they are, and up to each ROUND_TRIP_SIZES side and back."""
    x = images[:, None]
    trips = [F.adaptive_avg_pool2d((upsample(x, size) + 1) / 2, DIGITS_SIDE) for size in ROUND_TRIP_SIZES]
    return torch.cat([x, *trips])


def _jitter(x, generator):
    """Brightness in [0.7, 1.1] and Gaussian noise (std 0.05), clamped to [0, 1]."""
    scale = torch.empty(len(x), 1, 1, 1).uniform_(0.7, 1.1, generator=generator)
    return (x * scale + 0.05 * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def _shift(x, generator, pixels=MNIST_SHIFT):
    """Each image moved by a whole number of pixels in [-pixels, pixels] along each axis (zeros come in)."""
    n, side = len(x), x.shape[-1]
    offsets = torch.randint(0, 2 * pixels + 1, (n, 2), generator=generator)
    padded = F.pad(x[:, 0], (pixels,) * 4)
    rows = (torch.arange(side) + offsets[:, :1])[:, :, None]
    columns = (torch.arange(side) + offsets[:, 1:])[:, None, :]
    return padded[torch.arange(n)[:, None, None], rows, columns][:, None]


def resize(x, side):
    """(B, 1, s, s) -> (B, 1, side, side): bilinear, antialiased (how the MNIST reader brings channels to 28 px)."""
    return F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def _mnist_augment(x, generator):
    """Shifts; then of three parts of the batch, one as is and one taken to each of MNIST_ROUND_TRIPS px
    (8-bit) and back, as channels of stackmnist samples reach the classifier."""
    first, *parts = _shift(x, generator).tensor_split(1 + len(MNIST_ROUND_TRIPS))
    trips = [resize((resize(part, size) * 255).round() / 255, x.shape[-1])
             for part, size in zip(parts, MNIST_ROUND_TRIPS, strict=True)]
    return torch.cat([first, *trips])


def fit_classifier(model, images, labels, epochs, batch_size=128, augment=None, max_lr=None, seed=0):
    """Adam on cross-entropy; images (n, 1, s, s) in [0, 1], labels (n,).  ``augment(batch, generator)``
    alters each batch; with ``max_lr`` the rate follows a one-cycle schedule up to it, else stays 1e-3."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=max_lr or 1e-3)
    steps = epochs * -(-len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr, total_steps=steps) if max_lr else None
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(images), generator=generator).split(batch_size):
            x = augment(images[batch], generator) if augment else images[batch]
            loss = F.cross_entropy(model(x), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule:
                schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(model, images, labels, batch_size=1000):
    """Fraction of ``images`` (n, 1, s, s) that ``model`` labels correctly."""
    predictions = torch.cat([model(x).argmax(1) for x in images.split(batch_size)])
    return (predictions == labels).float().mean().item()


@contextlib.contextmanager
def _one_thread():
    """Run torch on one CPU thread: for a model this small, more threads cost more than they give
    (and far more on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_digits_classifier(epochs=30, seed=0):
    """The 8x8 digit CNN trained on the held-out digits -> (model, accuracy on the generator half)."""
    images, labels = digits_split("heldout")
    inputs = _round_trips(images)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = digit_cnn(DIGITS_SIDE)
    with _one_thread():
        fit_classifier(model, inputs, labels.repeat(len(inputs) // len(labels)), epochs, augment=_jitter,
                       seed=seed)
    test_images, test_labels = digits_split("generator")
    return model, accuracy(model, test_images[:, None], test_labels)


def mnist_tensors(root, train):
    """(float images (N, 1, 28, 28) in [0, 1], int64 labels (N,)) of an MNIST split."""
    images, labels = read_mnist(root, train)
    return torch.from_numpy(images.astype(np.float32) / 255.0)[:, None], torch.from_numpy(labels)


def train_mnist_classifier(root, epochs=MNIST_EPOCHS, seed=0):
    """The 28x28 digit CNN trained on MNIST's train split -> (model, accuracy on t10k)."""
    test_images, test_labels = mnist_tensors(root, train=False)  # both splits read before minutes of training
    images, labels = mnist_tensors(root, train=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = digit_cnn(MNIST_SIDE)
    with _one_thread():  # on a busy 2-core machine 2 threads took 3.1 times as long (718 s against 233 s)
        fit_classifier(model, images, labels, epochs, augment=_mnist_augment, max_lr=MNIST_MAX_LR, seed=seed)
    return model, accuracy(model, test_images, test_labels)


def save_classifier(path, model, side, accuracy_value):
    atomic_save({"arch": "digit_cnn", "side": side, "version": CLASSIFIER_VERSION,
                 "accuracy": accuracy_value, "state_dict": model.state_dict()}, path)


def _load_ours(path, side, hint):
    """A save_classifier file -> (model, accuracy), or None if ``path`` is another kind of file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch.load's note on TorchScript archives
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a plain torch.save file: TorchScript / torch.export are tried next
        return None
    if not isinstance(payload, dict) or payload.get("arch") != "digit_cnn":
        return None
    if payload.get("side") != side:
        raise MetricError(f"{path} is a {payload.get('side')} px digit classifier, this data set needs "
                        f"{side} px: pass the right --mode_classifier")
    model = digit_cnn(side)
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError) as error:
        raise MetricError(f"cannot load the classifier {path} ({type(error).__name__}): {hint}") from None
    return model.eval(), payload.get("accuracy")


@contextlib.contextmanager
def _quiet_loaders():
    """Silence what torch.jit.load and torch.export.load print about a file that is not theirs (warnings,
    and log records with a traceback): the one-line error says it."""
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load is deprecated, still supported
            yield
    finally:
        logger.setLevel(level)


def _load_exported(path, hint):
    """A TorchScript or torch.export (.pt2) model -> (module, None)."""
    failures = []
    with _quiet_loaders():
        for load in (lambda: torch.jit.load(path, map_location="cpu").eval(), lambda: torch.export.load(path).module()):
            try:
                return load(), None
            except Exception as error:  # torch raises many types here; the user needs one message
                failures.append(type(error).__name__)
    raise MetricError(f"cannot load the classifier {path} ({', '.join(failures)}): {hint}")


def _unreadable_hint(path, side):
    """What to do about a classifier file that no loader reads: a cache file is damaged (delete it, it is
    made again); a file the user named may be of another kind."""
    if os.path.dirname(os.path.abspath(path)) != os.path.dirname(os.path.abspath(default_classifier_path())):
        return "give a TorchScript or .pt2 file, or train one with mode_coverage --train_mnist"
    again = "it is trained again (seconds) on first use" if side == DIGITS_SIDE else \
        "then make it again with python -m metrics.mode_coverage --train_mnist DATADIR"
    return f"the cache file is damaged: delete it; {again}"


def load_classifier(path, side):
    """(model, accuracy or None) from a classifier file of any supported kind."""
    if os.path.isdir(path):
        raise MetricError(f"classifier file {path} is a folder: check --mode_classifier")
    if not os.path.isfile(path):
        raise MetricError(f"classifier file {path} not found: check --mode_classifier")
    hint = _unreadable_hint(path, side)
    return _load_ours(path, side, hint) or _load_exported(path, hint)


def check_classifier_target(path):
    """Before training a classifier: MetricError unless ``path`` can be written as a file."""
    files.check_output_file(path, "the classifier file", overwrite=True)


def digits_classifier(path=None, verbose=True):
    """The stacked_digits classifier: loaded from ``path`` (default cache), trained and saved if absent."""
    path = path or default_classifier_path()
    if os.path.isfile(path):
        return load_classifier(path, DIGITS_SIDE)
    check_classifier_target(path)
    model, accuracy_value = train_digits_classifier()
    save_classifier(path, model, DIGITS_SIDE, accuracy_value)
    if verbose:
        print(f"trained the digits classifier: accuracy {accuracy_value:.4f} on unseen digits; "
              f"saved to {path}", file=sys.stderr)
    return model, accuracy_value


def cached_mnist_classifier():
    """The path of the MNIST classifier that ``--train_mnist`` caches; MetricError naming the command if absent."""
    path = default_classifier_path("stackmnist")
    if not os.path.exists(path):
        raise MetricError(f"stackmnist mode coverage needs an MNIST classifier, and {path} does not exist: make it "
                          "once with python -m metrics.mode_coverage --train_mnist DATADIR (the folder holding "
                          "MNIST/raw), or pass --mode_classifier FILE")
    return path


class StackedReader(nn.Module):
    """Reads the three digits of stacked images: (N, 3, H, W) in [-1, 1] -> (N, 3) digits."""

    def __init__(self, classifier, side):
        super().__init__()
        self.classifier = classifier
        self.side = side

    @torch.no_grad()
    def forward(self, images):
        x = (images.float().clamp(-1, 1) + 1) / 2
        if self.side == DIGITS_SIDE:
            x = F.adaptive_avg_pool2d(x, self.side)
        else:
            x = resize(x, self.side)
        logits = self.classifier(x.reshape(-1, 1, self.side, self.side))
        return logits.argmax(1).reshape(len(images), 3)


def as_images(images):
    """Images as float (N, 3, H, W) in [-1, 1] on the CPU (where the classifiers run) from NCHW or NHWC,
    tensor (any device) or array, their values in a range ``metrics.images.pixel_range`` tells apart
    (uint8 [0, 255]; float [-1, 1], [0, 1] or [0, 255]: the rule of every reader of sample arrays)."""
    x = images.detach().cpu() if torch.is_tensor(images) else torch.from_numpy(np.array(images))  # a writable copy
    if x.ndim != 4 or 3 not in (x.shape[1], x.shape[-1]):
        raise MetricError(f"expected images of shape (N, 3, H, W) or (N, H, W, 3), got {tuple(x.shape)}")
    with metric_errors():
        low, high = pixel_range((x.float() if x.is_floating_point() else x).numpy(), "the samples")
    if x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    return x.float() if (low, high) == (-1, 1) else (x.float() - low) / ((high - low) / 2) - 1


def read_modes(reader, images):
    """Mode ids (B,) in [0, 1000) of (B, 3, H, W) stacked images in [-1, 1], on the images' device.

    A weighted sum of the digit columns: CUDA has no integer matrix product (``digits @ weights``
    fails there), and weights made with torch.tensor would be copied to the GPU, a sync, per batch."""
    digits = reader(images)
    return sum(digits[:, channel] * weight for channel, weight in enumerate(MODE_WEIGHTS))


def reader_for(dataset, classifier_path=None):
    """The StackedReader and its classifier's accuracy (None if unknown) for a data set."""
    if dataset == "stacked_digits":
        model, accuracy_value = digits_classifier(classifier_path)
        return StackedReader(model, DIGITS_SIDE), accuracy_value
    if dataset == "stackmnist":
        model, accuracy_value = load_classifier(classifier_path or cached_mnist_classifier(), MNIST_SIDE)
        return StackedReader(model, MNIST_SIDE), accuracy_value
    raise MetricError(f"mode coverage is defined for stacked_digits and stackmnist, not {dataset}")
