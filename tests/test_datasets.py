"""The table of data sets, the loaders on tiny data written in each real on-disk format, and their
errors: check_data's up front, and a bad file met mid-epoch (also through a DataLoader worker)."""

import argparse
import os
import pickle
import sys

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

import datasets_prep
from datasets_prep import DATA_SETS, DataError, check_data, get_dataset
from datasets_prep.cifar import Cifar10
from datasets_prep.common import list_images
from datasets_prep.digits import digits_split
from datasets_prep.lmdb_io import image_key
from datasets_prep.prepare_lmdb import prepare
from datasets_prep.registry import resolve
from tests._data_formats import (
    asymmetric_image,
    encode,
    mnist_like_digits,
    random_images,
    write_cifar10,
    write_image_folder,
    write_lsun_lmdb,
    write_mnist,
    write_nvae_lmdb,
)
from tests.conftest import model_parser, run_command
from utils.flags import resolve_ch_mult


def make_args(*argv):
    parser = model_parser()
    datasets_prep.add_data_flags(parser)
    return parser.parse_args([str(a) for a in argv])


def expected_tensor(image):
    """uint8 (H, W, 3) -> what the loaders return for it unresized: (3, H, W) in [-1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1


def left_is_bright(image):
    return image[:, :, : image.shape[2] // 2].mean() > image[:, :, image.shape[2] // 2:].mean()


def assert_flips_under_seed(dataset, index):
    """Some seeds flip item ``index``, some do not, and a seed always gives the same tensor."""
    outcomes = []
    for seed in range(12):
        torch.manual_seed(seed)
        first = dataset[index][0]
        torch.manual_seed(seed)
        assert torch.equal(first, dataset[index][0])
        outcomes.append(left_is_bright(first))
    assert any(outcomes) and not all(outcomes)


def assert_never_flips(dataset, index):
    for seed in range(6):
        torch.manual_seed(seed)
        assert left_is_bright(dataset[index][0])


def assert_images(dataset, size, count):
    assert len(dataset) == count
    for index in range(count):
        image, label = dataset[index]
        assert image.shape == (3, size, size) and image.dtype == torch.float32
        assert image.min() >= -1 and image.max() <= 1
        assert isinstance(label, int)


def varies_with_seed(dataset, index):
    """True if item ``index`` depends on torch's seed (a random flip of an asymmetric image)."""
    outcomes = set()
    for seed in range(8):
        torch.manual_seed(seed)
        outcomes.add(dataset[index][0].numpy().tobytes())
    return len(outcomes) > 1


def _cifar10(root):
    write_cifar10(root, per_batch=2, first=asymmetric_image(32, 32))
    return root, 0


def _stackmnist(root):
    for train in (True, False):
        write_mnist(root, *mnist_like_digits(8), train=train)
    return root, 0


def _lsun(root):
    keys = write_lsun_lmdb(str(root / "church_outdoor_train_lmdb"), [asymmetric_image(16, 16), *random_images(3, 8, 8)])
    return root, sorted(keys).index(keys[0])


def _prepared_lmdb(root):
    write_image_folder(root / "images", [asymmetric_image(16, 16), *random_images(3, 16, 16)], nested=False)
    prepare(str(root / "images"), str(root / "db"), resolution=16)
    return root / "db", 0


def _folder(root):
    write_image_folder(root, [asymmetric_image(16, 16), *random_images(2, 20, 16)], nested=False)
    return root, 0


# Per row of the table: lay out tiny data in its format under ROOT -> (--datadir or None, index of an
# item whose image is asymmetric where the data set can flip).  A new row needs an entry here.
TINY_DATA = {"cifar10": _cifar10, "stackmnist": _stackmnist, "lsun": _lsun, "celeba_256": _prepared_lmdb,
             "ffhq_256": _prepared_lmdb, "folder": _folder, "stacked_digits": lambda root: (None, 0)}


# --- the table -----------------------------------------------------------------------------------


def test_the_flags_come_from_the_table():
    assert model_parser()._option_string_actions["--dataset"].choices == datasets_prep.dataset_names() \
        == tuple(DATA_SETS)
    assert {name: datasets_prep.default_ch_mult(name) for name in DATA_SETS} == {  # the reference's; folder: by size
        "cifar10": [1, 2, 2, 2], "stackmnist": [1, 2, 2, 2], "stacked_digits": [1, 2, 2, 2],
        "lsun": [1, 1, 2, 2, 4, 4], "celeba_256": [1, 1, 2, 2, 4, 4], "ffhq_256": [1, 1, 2, 2, 4, 4], "folder": None}
    for row in DATA_SETS.values():
        for reference in (row.loader, row.check, row.flags):
            assert reference is None or callable(resolve(reference)), reference


def test_ch_mult_default_is_the_rows_else_by_image_size():
    lsun = resolve_ch_mult(make_args("--dataset", "lsun", "--image_size", 256), datasets_prep.default_ch_mult("lsun"))
    assert tuple(lsun.ch_mult) == DATA_SETS["lsun"].ch_mult == (1, 1, 2, 2, 4, 4)
    assert DATA_SETS["folder"].ch_mult is None
    assert resolve_ch_mult(make_args("--dataset", "folder", "--image_size", 16)).ch_mult == [1, 2, 2]


@pytest.mark.parametrize("name", DATA_SETS)
def test_every_row_builds_its_data_set(tmp_path, name):
    """Tiny data in the row's format: checked, then built with the row's channels; training items
    flip at random exactly when the row says so, test items never."""
    row = DATA_SETS[name]
    datadir, index = TINY_DATA[name](tmp_path)
    args = make_args("--dataset", name, *(["--datadir", datadir] if datadir else []), "--image_size", 16,
                     "--stacked_digits_length", 8)
    check_data(args)
    train = get_dataset(args)
    assert train[index][0].shape == (row.channels, 16, 16)
    assert varies_with_seed(train, index) == row.flips
    assert not varies_with_seed(get_dataset(args, train=False), index)


def test_importing_the_table_is_light():
    """utils.flags reads the table at start-up (test_ddgan.py keeps torchvision out of it)."""
    code = ("import sys; import datasets_prep.registry; heavy = ('torch', 'torchvision', 'PIL', 'lmdb'); "
            "print(sorted(m for m in heavy if m in sys.modules)); import datasets_prep, utils.flags; "
            "print(sorted(m for m in heavy if m in sys.modules))")
    result = run_command("-c", code)
    assert result.stdout.split("\n")[:2] == ["[]", "['torch']"], result.stderr  # torch: utils.argtypes


# --- cifar10 -----------------------------------------------------------------------------------


def test_cifar10_reads_python_batches(tmp_path):
    written = write_cifar10(tmp_path, per_batch=3)
    dataset = get_dataset(make_args("--dataset", "cifar10", "--datadir", tmp_path), train=False)
    images, labels = written["test_batch"]
    assert_images(dataset, 32, 3)
    for index in range(3):
        image, label = dataset[index]
        assert label == labels[index]
        expected = expected_tensor(images[index])
        assert torch.allclose(image, expected, atol=1e-6)


def test_cifar10_train_split_and_flips(tmp_path):
    write_cifar10(tmp_path, per_batch=2, first=asymmetric_image(32, 32))
    train = get_dataset(make_args("--dataset", "cifar10", "--datadir", tmp_path))
    assert len(train) == 10
    assert_flips_under_seed(train, 0)
    assert_never_flips(Cifar10(str(tmp_path), 32, train=True, flip=False), 0)


def test_cifar10_corrupt_batch_names_the_file(tmp_path):
    write_cifar10(tmp_path)
    bad = os.path.join(tmp_path, "cifar-10-batches-py", "data_batch_3")
    with open(bad, "wb") as handle:
        handle.write(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR-10 python batch"):
        get_dataset(make_args("--dataset", "cifar10", "--datadir", tmp_path))


class RunsCode:
    """Unpickling this calls os.system: what a tampered batch file could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar10_batch_cannot_run_code(tmp_path):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    marker = tmp_path / "code_ran"
    batch.write_bytes(pickle.dumps({b"data": RunsCode(marker), b"labels": []}))
    with pytest.raises(DataError) as info:
        get_dataset(make_args("--dataset", "cifar10", "--datadir", tmp_path))
    message = str(info.value)
    assert "data_batch_2 is not a CIFAR-10 python batch (it refers to posix.system" in message
    assert "download it again" in message and "\n" not in message
    assert not marker.exists()


def test_cifar10_batch_written_by_python3_numpy_reads_too(tmp_path):
    written = write_cifar10(tmp_path, per_batch=2)
    images, labels = written["test_batch"]
    entry = {b"data": images.transpose(0, 3, 1, 2).reshape(2, 3072), b"labels": labels}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(entry))
    dataset = Cifar10(str(tmp_path), 32, train=False, flip=False)
    assert torch.equal(dataset[1][0], expected_tensor(images[1])) and dataset[1][1] == labels[1]


def test_cifar10_missing_with_downloads_off(tmp_path, monkeypatch):
    monkeypatch.setenv("DDGAN_NO_DOWNLOAD", "1")
    monkeypatch.setattr("torchvision.datasets.CIFAR10", lambda *args, **kwargs: pytest.fail("downloaded"))
    with pytest.raises(DataError, match=r"CIFAR-10 is not in .* and downloads are off \(\$DDGAN_NO_DOWNLOAD"):
        check_data(make_args("--dataset", "cifar10", "--datadir", tmp_path))


def test_cifar10_check_data_downloads_only_when_missing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("datasets_prep.cifar.download_cifar10", calls.append)
    write_cifar10(tmp_path)
    check_data(make_args("--dataset", "cifar10", "--datadir", tmp_path))
    assert calls == []
    check_data(make_args("--dataset", "cifar10", "--datadir", tmp_path / "empty"))
    assert calls == [str(tmp_path / "empty")]


def test_cifar10_failed_download_says_where_to_put_the_files(tmp_path, monkeypatch):
    def offline(root, train, download):
        raise RuntimeError("network unreachable")

    monkeypatch.delenv("DDGAN_NO_DOWNLOAD", raising=False)
    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    with pytest.raises(DataError, match=r"downloading it failed \(network unreachable\).*cifar-10-batches"):
        check_data(make_args("--dataset", "cifar10", "--datadir", tmp_path))


# --- stackmnist ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_stackmnist_stacks_three_digits(tmp_path, gz):
    images, labels = mnist_like_digits(20)
    write_mnist(tmp_path, images, labels, gz=gz)
    labels = labels.astype(int)
    dataset = get_dataset(make_args("--dataset", "stackmnist", "--datadir", tmp_path))
    assert_images(dataset, 32, 40)
    again = get_dataset(make_args("--dataset", "stackmnist", "--datadir", tmp_path))
    for index in (0, 7, 39):
        image, label = dataset[index]
        triplet = dataset.triplets[index]
        assert label == 100 * labels[triplet[0]] + 10 * labels[triplet[1]] + labels[triplet[2]]
        for channel in range(3):  # each channel is its digit, brightest where the digit is
            source = torch.from_numpy(images[triplet[channel]]).float()
            resized = torch.nn.functional.interpolate(source[None, None], size=32, mode="bilinear")[0, 0]
            assert torch.corrcoef(torch.stack([image[channel].flatten(), resized.flatten()]))[0, 1] > 0.9
        assert torch.equal(image, again[index][0]) and label == again[index][1]
    columns = dataset.triplets
    assert all(sorted(columns[:20, c]) == list(range(20)) for c in range(3))


def test_stackmnist_missing_files_download_then_fail_cleanly(tmp_path, monkeypatch):
    def offline(root, train, download):
        raise OSError("no route")

    monkeypatch.delenv("DDGAN_NO_DOWNLOAD", raising=False)
    monkeypatch.setattr("torchvision.datasets.MNIST", offline)
    with pytest.raises(DataError, match="MNIST is not in .*MNIST/raw and downloading it failed"):
        check_data(make_args("--dataset", "stackmnist", "--datadir", tmp_path))


def test_stackmnist_corrupt_idx(tmp_path):
    images, labels = mnist_like_digits(4)
    write_mnist(tmp_path, images, labels)
    with open(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte", "wb") as handle:
        handle.write(b"\x01\x02")
    with pytest.raises(DataError, match="train-images-idx3-ubyte is not a readable MNIST idx file"):
        get_dataset(make_args("--dataset", "stackmnist", "--datadir", tmp_path))


# --- lsun ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["WEBP", "JPEG"])
def test_lsun_lmdb_resize_crop_flip(tmp_path, fmt):
    images = [asymmetric_image(24, 40)] + list(random_images(4, 30, 20))
    lmdb_path = tmp_path / "church_outdoor_train_lmdb"
    keys = write_lsun_lmdb(str(lmdb_path), images, fmt)
    for datadir in (tmp_path, lmdb_path):  # the parent folder, as the reference, or the LMDB itself
        check_data(make_args("--dataset", "lsun", "--datadir", datadir))
        dataset = get_dataset(make_args("--dataset", "lsun", "--datadir", datadir, "--image_size", 16))
        assert_images(dataset, 16, 5)
        assert dataset.keys == sorted(keys)
    assert_flips_under_seed(dataset, dataset.keys.index(keys[0]))
    args = make_args("--dataset", "lsun", "--datadir", tmp_path, "--image_size", 16)
    unflipped = get_dataset(args, train=False)
    assert_never_flips(unflipped, dataset.keys.index(keys[0]))


def test_lsun_subset_is_the_first_keys(tmp_path, monkeypatch):
    keys = write_lsun_lmdb(str(tmp_path / "db"), random_images(6, 8, 8))
    monkeypatch.setattr("datasets_prep.lsun.LSUN_SUBSET", 4)
    subset = get_dataset(make_args("--dataset", "lsun", "--datadir", tmp_path / "db", "--image_size", 8))
    whole = get_dataset(make_args("--dataset", "lsun", "--datadir", tmp_path / "db", "--no-lsun_subset"))
    assert subset.keys == sorted(keys)[:4] and whole.keys == sorted(keys)


def test_lsun_errors(tmp_path):
    with pytest.raises(DataError, match="--datadir is required for --dataset lsun"):
        check_data(make_args("--dataset", "lsun"))
    with pytest.raises(DataError, match="does not exist"):
        check_data(make_args("--dataset", "lsun", "--datadir", tmp_path / "nope"))
    with pytest.raises(DataError, match="no LSUN LMDB in .*church_outdoor_train_lmdb"):
        check_data(make_args("--dataset", "lsun", "--datadir", tmp_path))
    write_lsun_lmdb(str(tmp_path / "empty"), [])
    with pytest.raises(DataError, match="is empty"):
        check_data(make_args("--dataset", "lsun", "--datadir", tmp_path / "empty"))


# --- celeba_256 / ffhq_256 / folder LMDBs ------------------------------------------------------


@pytest.mark.parametrize("name", ["celeba_256", "ffhq_256", "folder"])
def test_prepared_lmdb_loads(tmp_path, name):
    images = [asymmetric_image(16, 16)] + list(random_images(3, 16, 16))
    write_image_folder(tmp_path / "images", images, nested=False)
    prepare(str(tmp_path / "images"), str(tmp_path / "db"), resolution=16)
    args = make_args("--dataset", name, "--datadir", tmp_path / "db", "--image_size", 16)
    check_data(args)
    dataset = get_dataset(args)
    assert_images(dataset, 16, 4)
    assert_flips_under_seed(dataset, 0)
    torch.manual_seed(0)
    unflipped = get_dataset(args, train=False)[0][0]
    assert torch.equal(unflipped, expected_tensor(images[0]))


def test_prepared_lmdb_resizes_to_image_size(tmp_path):
    write_image_folder(tmp_path / "images", random_images(2, 32, 32), nested=False)
    prepare(str(tmp_path / "images"), str(tmp_path / "db"), resolution=32)
    args = make_args("--dataset", "celeba_256", "--datadir", tmp_path / "db", "--image_size", 8)
    dataset = get_dataset(args)
    assert_images(dataset, 8, 2)


def test_nvae_layout_loads(tmp_path):
    images = random_images(3, 8, 8)
    images[0, 0, 0] = images[1, 0, 0] = (66, 77, 0)  # raw pixels that begin like a BMP header
    write_nvae_lmdb(str(tmp_path / "train.lmdb"), images)
    args = make_args("--dataset", "celeba_256", "--datadir", tmp_path, "--image_size", 8)
    check_data(args)
    dataset = get_dataset(args, train=False)
    assert_images(dataset, 8, 3)
    for index in (0, 2):
        assert torch.equal(dataset[index][0], expected_tensor(images[index]))


def test_nvae_layout_with_encoded_images(tmp_path):
    images = random_images(2, 8, 8)
    write_nvae_lmdb(str(tmp_path / "db"), [encode(image) for image in images], raw=False)
    args = make_args("--dataset", "ffhq_256", "--datadir", tmp_path / "db", "--image_size", 8)
    dataset = get_dataset(args, train=False)
    assert torch.equal(dataset[1][0], expected_tensor(images[1]))


def test_lmdb_errors(tmp_path):
    with pytest.raises(DataError, match="--datadir is required"):
        check_data(make_args("--dataset", "celeba_256"))
    with pytest.raises(DataError, match="does not exist: create it with: python -m datasets_prep.prepare"):
        check_data(make_args("--dataset", "ffhq_256", "--datadir", tmp_path / "missing"))
    with pytest.raises(DataError, match="no LMDB"):
        check_data(make_args("--dataset", "ffhq_256", "--datadir", tmp_path))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "data.mdb").write_bytes(b"garbage" * 100)
    with pytest.raises(DataError, match="cannot open the LMDB .*broken"):
        check_data(make_args("--dataset", "celeba_256", "--datadir", tmp_path / "broken"))
    write_lsun_lmdb(str(tmp_path / "lsun"), random_images(1, 8, 8))
    with pytest.raises(DataError, match="not an image LMDB.*--dataset lsun"):
        check_data(make_args("--dataset", "celeba_256", "--datadir", tmp_path / "lsun"))


def test_lmdb_package_is_needed_only_for_lmdb_data(tmp_path, monkeypatch, tiny_train):
    """Without the lmdb package the rest loads (bench.py on a GPU image that lacks it); an LMDB says why."""
    write_nvae_lmdb(str(tmp_path / "train.lmdb"), random_images(1, 8, 8))
    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(DataError, match="needs the lmdb package: pip install lmdb"):
        check_data(make_args("--dataset", "celeba_256", "--datadir", tmp_path / "train.lmdb"))
    # Through the CLI, in a fresh interpreter where lmdb cannot be imported at all.
    argv = [*tiny_train, "--dataset", "celeba_256", "--datadir", str(tmp_path / "train.lmdb"),
            "--save_dir", str(tmp_path / "runs")]
    script = ("import runpy, sys; sys.modules['lmdb'] = None; "
              f"sys.argv = ['train_ddgan.py', *{argv!r}]; runpy.run_path('train_ddgan.py', run_name='__main__')")
    result = run_command("-c", script)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: reading the LMDB"), result.stderr
    assert "needs the lmdb package: pip install lmdb" in result.stderr
    assert not (tmp_path / "runs").exists()


# --- folder --------------------------------------------------------------------------------------


def test_folder_reads_nested_images(tmp_path):
    images = [asymmetric_image(20, 20)] + list(random_images(6, 24, 18, seed=3))
    paths = write_image_folder(tmp_path, images)
    (tmp_path / "notes.txt").write_text("not an image")
    args = make_args("--dataset", "folder", "--datadir", tmp_path, "--image_size", 12)
    check_data(args)
    dataset = get_dataset(args)
    assert dataset.files == sorted(paths)
    assert_images(dataset, 12, 7)
    assert_flips_under_seed(dataset, dataset.files.index(paths[0]))


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="--datadir is required for --dataset folder"):
        check_data(make_args("--dataset", "folder"))
    with pytest.raises(DataError, match="is not a folder"):
        check_data(make_args("--dataset", "folder", "--datadir", tmp_path / "missing"))
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match="no images .* under"):
        check_data(make_args("--dataset", "folder", "--datadir", tmp_path))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken.png is not a readable image .*: delete or re-encode it"):
        check_data(make_args("--dataset", "folder", "--datadir", tmp_path))


# --- stacked_digits ------------------------------------------------------------------------------


def test_stacked_digits_items():
    args = make_args("--dataset", "stacked_digits", "--stacked_digits_length", 50)
    check_data(args)
    dataset = get_dataset(args)
    assert_images(dataset, 32, 50)
    images, labels = digits_split("generator")
    for index in (0, 49):
        image, label = dataset[index]
        triplet = dataset.triplets[index]
        assert label == int(100 * labels[triplet[0]] + 10 * labels[triplet[1]] + labels[triplet[2]])
        pooled = torch.nn.functional.adaptive_avg_pool2d((image + 1) / 2, 8)
        assert (pooled - images[triplet]).abs().max() < 0.35
    again = get_dataset(args)
    assert torch.equal(again.triplets, dataset.triplets) and torch.equal(again[3][0], dataset[3][0])
    assert get_dataset(make_args("--dataset", "stacked_digits", "--image_size", 8))[0][0].shape == (3, 8, 8)
    assert len(get_dataset(make_args("--dataset", "stacked_digits"))) == 60_000


def test_digit_halves_are_disjoint_and_balanced():
    from datasets_prep.digits import _split_indices

    halves = _split_indices()
    assert not set(halves["generator"]) & set(halves["heldout"])
    assert len(halves["generator"]) + len(halves["heldout"]) == 1797
    counts = np.bincount(digits_split("heldout")[1].numpy(), minlength=10)
    assert counts.min() >= 85


# --- check_data and flags --------------------------------------------------------------------------


def test_unknown_dataset_is_refused():
    with pytest.raises(DataError, match="unknown --dataset 'imagenet': choose one of cifar10"):
        check_data(argparse.Namespace(dataset="imagenet", datadir=None, image_size=32))
    with pytest.raises(DataError, match="unknown --dataset"):
        get_dataset(argparse.Namespace(dataset="imagenet", datadir=None, image_size=32))


def test_data_flags_defaults():
    args = make_args()
    assert args.lsun_subset is True and args.stacked_digits_length == 60_000
    assert make_args("--no-lsun_subset").lsun_subset is False
    with pytest.raises(SystemExit):
        make_args("--stacked_digits_length", "0")


def test_lmdb_datasets_work_in_forked_workers(tmp_path):
    write_lsun_lmdb(str(tmp_path / "lsun"), random_images(4, 8, 8))
    write_nvae_lmdb(str(tmp_path / "nvae"), random_images(4, 8, 8))
    for name, datadir in (("lsun", "lsun"), ("celeba_256", "nvae")):
        args = make_args("--dataset", name, "--datadir", tmp_path / datadir, "--image_size", 8)
        dataset = get_dataset(args, train=False)
        first = dataset[0][0]  # the parent opens the LMDB before the workers fork
        loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2)
        batches = list(loader)
        assert sum(len(images) for images, _ in batches) == 4
        assert batches[0][0].shape == (2, 3, 8, 8) and torch.equal(batches[0][0][0], first)


# --- a bad file met mid-epoch ----------------------------------------------------------------------


def _corrupt_folder(root):
    write_image_folder(root, random_images(4, 8, 8), nested=False)
    (root / "img002.png").write_bytes(b"\x89PNG cut short")
    return ("--dataset", "folder", "--datadir", root), f"{root}/img002.png is not a readable image"


def _corrupt_prepared_lmdb(root):
    write_image_folder(root / "images", random_images(4, 8, 8), nested=False)
    prepare(str(root / "images"), str(root / "db"), resolution=8)
    env = lmdb.open(str(root / "db"))
    with env.begin(write=True) as txn:
        txn.put(image_key(8, 2), b"\x89PNG cut short")
    env.close()
    return ("--dataset", "ffhq_256", "--datadir", root / "db"), f"{root}/db key 8-00002 is not a readable image"


def _corrupt_lsun(root):
    keys = sorted(write_lsun_lmdb(str(root / "lsun"), random_images(4, 8, 8)))
    env = lmdb.open(str(root / "lsun"))
    with env.begin(write=True) as txn:
        txn.put(keys[2], b"RIFF cut short")
    env.close()
    return ("--dataset", "lsun", "--datadir", root / "lsun"), f"key {keys[2].decode()} is not a readable image"


@pytest.mark.parametrize("corrupt", [_corrupt_folder, _corrupt_prepared_lmdb, _corrupt_lsun])
def test_unreadable_image_mid_epoch_is_one_line_naming_it(tmp_path, corrupt):
    """The loop's DataLoader worker re-raises DataError with its whole traceback as the message; what
    arrives is still the one line naming the file or key, with the command that lists them all."""
    argv, names_it = corrupt(tmp_path)
    args = make_args(*argv, "--image_size", 8)
    check_data(args)  # the first image is fine
    dataset = get_dataset(args, train=False)
    for workers in (0, 1):
        with pytest.raises(DataError) as info:
            list(torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=workers))
        message = str(info.value)
        assert names_it in message and "\n" not in message, message
        assert message.endswith(f"python -m datasets_prep.prepare_lmdb --check {dataset.source} lists every "
                                "unreadable image"), message


def test_data_error_is_one_line():
    assert str(DataError("first\n  second\n")) == "first second"
    report = ("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
              '  File "x.py", line 1, in f\ndatasets_prep.errors.DataError: a.png is not an image: delete it\n')
    assert str(DataError(report)) == "a.png is not an image: delete it"
    assert pickle.loads(pickle.dumps(DataError("kept"))).args == ("kept",)


# --- 16-bit images -------------------------------------------------------------------------------


def test_16_bit_png_keeps_its_grey_level(tmp_path):
    """A 16-bit grey PNG (mode I;16) at half scale reads as mid-grey, not as saturated white."""
    (tmp_path / "images").mkdir()
    Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16)).save(tmp_path / "images" / "deep.png")
    prepare(str(tmp_path / "images"), str(tmp_path / "db"), resolution=8)
    for datadir in (tmp_path / "images", tmp_path / "db"):
        args = make_args("--dataset", "folder", "--datadir", datadir, "--image_size", 8)
        image = get_dataset(args, train=False)[0][0]
        assert torch.allclose(image, torch.full_like(image, 128 / 127.5 - 1), atol=1e-6), datadir


# --- entries that are not image files ------------------------------------------------------------


def test_fifo_named_like_an_image_is_refused_without_reading_it(tmp_path):
    write_image_folder(tmp_path, random_images(2, 8, 8), nested=False)
    os.mkfifo(tmp_path / "stuck.png")  # opening it for reading would block forever
    with pytest.raises(DataError, match=r"stuck.png is a FIFO, not an image file: remove it from"):
        check_data(make_args("--dataset", "folder", "--datadir", tmp_path))


def test_broken_link_is_refused_with_its_name(tmp_path):
    write_image_folder(tmp_path, random_images(2, 8, 8), nested=False)
    os.symlink(tmp_path / "moved_away.png", tmp_path / "gone.png")
    with pytest.raises(DataError, match=r"gone.png is a broken symbolic link: remove it from .* or restore"):
        get_dataset(make_args("--dataset", "folder", "--datadir", tmp_path))


def test_links_are_followed_but_never_in_circles(tmp_path):
    paths = write_image_folder(tmp_path / "data", random_images(3, 8, 8))
    os.symlink(tmp_path / "data", tmp_path / "data" / "part0" / "back_to_top")
    os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "linked")
    write_image_folder(tmp_path / "elsewhere", random_images(1, 8, 8), nested=False)
    assert list_images(tmp_path / "data") == sorted([*paths, os.path.join("linked", "img000.png")])


def test_folder_that_cannot_be_listed_is_named(tmp_path, monkeypatch):
    write_image_folder(tmp_path, random_images(3, 8, 8))
    real_scandir = os.scandir

    def denied(path):
        if str(path).endswith("part1"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", denied)  # root reads every folder, so permissions cannot show it
    with pytest.raises(DataError, match=r"cannot list the folder .*part1 \(Permission denied\): fix its"):
        check_data(make_args("--dataset", "folder", "--datadir", tmp_path))


# --- damaged LMDBs -------------------------------------------------------------------------------


def test_truncated_lmdb_is_refused_before_a_read_could_crash(tmp_path):
    """Reading a page past the end of a cut-short data.mdb would kill the process (SIGBUS)."""
    write_lsun_lmdb(str(tmp_path / "lsun"), random_images(40, 16, 16))
    data = tmp_path / "lsun" / "data.mdb"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(DataError, match=r"lsun/data.mdb is truncated \(.* bytes\): copy or download it again"):
        check_data(make_args("--dataset", "lsun", "--datadir", tmp_path / "lsun"))


def test_lmdb_with_a_bad_length_or_raw_value(tmp_path):
    write_nvae_lmdb(str(tmp_path / "nvae"), random_images(3, 8, 8))
    env = lmdb.open(str(tmp_path / "nvae"))
    with env.begin(write=True) as txn:
        txn.put(b"1", b"\0" * 10)
    env.close()
    dataset = get_dataset(make_args("--dataset", "celeba_256", "--datadir", tmp_path / "nvae", "--image_size", 8))
    with pytest.raises(DataError, match=r"nvae key 1 holds 10 bytes, not the pixels of a square RGB image"):
        dataset[1]
    write_nvae_lmdb(str(tmp_path / "bad_length"), [b"length", b"x"], raw=False)
    env = lmdb.open(str(tmp_path / "bad_length"))
    with env.begin(write=True) as txn:
        txn.put(b"length", b"twelve")
    env.close()
    with pytest.raises(DataError, match=r"has a 'length' key that is not a number \(b'twelve'\)"):
        check_data(make_args("--dataset", "ffhq_256", "--datadir", tmp_path / "bad_length"))
