"""pytorch_fid: the Fréchet distance, the FID network, image sources and the FID command line."""

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import linalg

from metrics import images as data
from metrics import scores
from metrics.images import (
    ImagePathDataset,
    SampleArrayDataset,
    check_samples,
    image_to_tensor,
    load_sample_array,
    open_images,
)
from metrics.inception import (
    FID_WEIGHTS_NAME,
    InceptionNetwork,
    InceptionV3,
    InceptionWeightsError,
    avg_pool_same,
    fid_inception_v3,
    find_fid_weights,
    load_checked,
    max_pool_same,
    random_init,
    shared_inception,
)
from pytorch_fid import fid_score
from pytorch_fid.fid_score import (
    calculate_fid_given_paths,
    calculate_frechet_distance,
    compute_statistics_of_path,
    get_activations,
)
from tests._data_formats import random_images, write_pngs
from tests.conftest import cli_env, finish, one_error_line, run_command, start_command
from utils import outputs

FID = "-m pytorch_fid.fid_score"
FAST = ["--random-weights", "--num-workers", "0", "--device", "cpu", "--batch-size", "3"]


def random_spd(dim, rng):
    a = rng.normal(size=(dim, dim))
    return a @ a.T + dim * np.eye(dim)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two folders of four 32x32 noise PNGs; 'a' also as samples.npy and samples.npz."""
    root = tmp_path_factory.mktemp("images")
    images_a, images_b = random_images(4, seed=1), random_images(4, seed=2)
    np.save(root / "a.npy", images_a)
    np.savez(root / "a.npz", samples=images_a)
    return write_pngs(root / "a", images_a), write_pngs(root / "b", images_b)


# The Fréchet distance.

def test_equal_covariances_give_squared_mean_distance():
    rng = np.random.default_rng(0)
    sigma, mu1, mu2 = random_spd(6, rng), rng.normal(size=6), rng.normal(size=6)
    expected = np.sum((mu1 - mu2) ** 2)
    assert calculate_frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-6)


def test_diagonal_covariances_closed_form():
    rng = np.random.default_rng(1)
    a, b, mu1, mu2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5), rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)
    assert calculate_frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-8)


def test_matches_the_symmetric_square_root_form():
    rng = np.random.default_rng(2)
    s1, s2, mu1, mu2 = random_spd(8, rng), random_spd(8, rng), rng.normal(size=8), rng.normal(size=8)
    root1 = linalg.sqrtm(s1).real
    cross = np.trace(linalg.sqrtm(root1 @ s2 @ root1).real)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * cross
    assert calculate_frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_singular_covariance_of_a_set_with_itself_is_zero():
    activations = np.random.default_rng(3).normal(size=(3, 8))
    mu, sigma = np.mean(activations, 0), np.cov(activations, rowvar=False)
    assert calculate_frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-4)


def test_non_finite_square_root_retries_with_eps(monkeypatch):
    calls = []

    def fake_sqrtm(matrix):
        calls.append(matrix)
        return np.full_like(matrix, np.nan) if len(calls) == 1 else np.eye(len(matrix))

    monkeypatch.setattr(scores, "_sqrtm", fake_sqrtm)
    sigma = np.diag([1.0, 0.0])
    fid = calculate_frechet_distance(np.zeros(2), sigma, np.zeros(2), sigma, eps=1e-3)
    np.testing.assert_allclose(calls[1], (sigma + 1e-3 * np.eye(2)) @ (sigma + 1e-3 * np.eye(2)))
    assert fid == pytest.approx(2 * 1 - 2 * 2)


def test_imaginary_square_root(monkeypatch):
    sigma = np.eye(3)
    monkeypatch.setattr(scores, "_sqrtm", lambda m: m + 1e-6j)
    assert calculate_frechet_distance(np.zeros(3), sigma, np.zeros(3), sigma) == pytest.approx(0)
    monkeypatch.setattr(scores, "_sqrtm", lambda m: m + 0.1j * np.eye(3))
    with pytest.raises(ValueError, match="imaginary component"):
        calculate_frechet_distance(np.zeros(3), sigma, np.zeros(3), sigma)


def test_statistics_of_different_dims_are_refused():
    with pytest.raises(ValueError, match="same --dims"):
        calculate_frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# The network.

@pytest.fixture(scope="module")
def network():
    """The random FID network's first block (64-d features): fast, for the plumbing."""
    return InceptionV3([0], random_weights=True)


def test_blocks_and_logits_shapes():
    network = InceptionV3([0, 1, 2, 3], random_weights=True)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        outputs = network(x)
        features, logits = network.features_and_logits(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 64, 73, 73), (2, 192, 35, 35), (2, 768, 17, 17),
                                                 (2, 2048, 1, 1)]
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    torch.testing.assert_close(features, outputs[3].flatten(1))
    torch.testing.assert_close(logits, network.fc(features))
    assert features.std() > 0.01  # the random network does not wash the images out


def test_fid_pooling():
    net = fid_inception_v3(random_weights=True)
    pools = [getattr(net, f"Mixed_{name}").pool for name in ("5b", "5c", "5d", "6b", "6c", "6d", "6e", "7b")]
    assert pools == [avg_pool_same] * 8 and net.Mixed_7c.pool is max_pool_same
    assert net.fc.out_features == 1008
    assert avg_pool_same(torch.ones(1, 1, 4, 4)).eq(1).all()  # the padding is not averaged in


class _TFPooling:
    """torch.nn.functional as torchvision's Inception blocks see it, pooling like the FID graph."""

    def __getattr__(self, name):
        return getattr(F, name)

    @staticmethod
    def avg_pool2d(x, kernel_size, stride, padding):
        if x.shape[1] == 2048:  # Mixed_7c
            return F.max_pool2d(x, kernel_size, stride, padding)
        return F.avg_pool2d(x, kernel_size, stride, padding, count_include_pad=False)


def test_network_matches_torchvision(monkeypatch):
    """Same outputs as torchvision's Inception3 on the same weights; with the FID pooling patched
    into torchvision's blocks, the same as the FID network."""
    tv_inception = pytest.importorskip("torchvision.models.inception")
    reference = tv_inception.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                          num_classes=1008)
    random_init(reference.eval())  # O(1) activations all the way, so wiring errors show
    x = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1
    outputs = {}
    with torch.no_grad():
        for fid in (False, True):
            if fid:
                monkeypatch.setattr(tv_inception, "F", _TFPooling())
            load_checked(net := InceptionNetwork(fid=fid).eval(), reference.state_dict(), "torchvision")
            outputs[fid] = net(x)
            torch.testing.assert_close(outputs[fid], reference(x))
    assert not torch.allclose(outputs[True], outputs[False], rtol=1e-3)


def test_resize_and_normalize_input():
    x = torch.rand(1, 3, 32, 32)
    plain = InceptionV3([0], resize_input=False, normalize_input=False, random_weights=True)
    with torch.no_grad():
        expected = plain(2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1)[0]
        torch.testing.assert_close(InceptionV3([0], random_weights=True)(x)[0], expected)


def test_random_weights_are_fixed_and_leave_the_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    first = InceptionV3([0], random_weights=True)
    assert torch.rand(1) == expected
    second = InceptionV3([0], random_weights=True, requires_grad=True)
    for p, q in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(p, q) and not p.requires_grad and q.requires_grad


def test_bad_output_blocks():
    with pytest.raises(ValueError, match="output_blocks"):
        InceptionV3([4], random_weights=True)


def test_pytorch_fid_public_names():
    """The names pytorch-fid 0.3.0 exports exist here and are what the FID network is built of."""
    import pytorch_fid
    from metrics import inception

    assert pytorch_fid.__version__ == "0.3.0"
    assert isinstance(fid_score.parser, argparse.ArgumentParser) and fid_score.parser.prog.endswith("fid_score")
    net = fid_inception_v3(random_weights=True)
    blocks = {"5b": "FIDInceptionA", "6e": "FIDInceptionC", "7b": "FIDInceptionE_1", "7c": "FIDInceptionE_2"}
    for name, cls in blocks.items():
        assert type(getattr(net, f"Mixed_{name}")) is getattr(inception, cls)
    assert type(InceptionNetwork(fid=False).Mixed_7c) is inception.InceptionE


# Finding and loading the weights.

def test_weights_lookup_order(tmp_path, monkeypatch):
    files = {name: tmp_path / name for name in ("explicit", "ddgan", "fid")}
    for path in files.values():
        path.touch()
    hub = tmp_path / "torch_home" / "hub" / "checkpoints" / FID_WEIGHTS_NAME
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("DDGAN_INCEPTION_WEIGHTS", str(files["ddgan"]))
    monkeypatch.setenv("FID_WEIGHTS_PATH", str(files["fid"]))
    assert find_fid_weights(files["explicit"]) == files["explicit"]
    assert find_fid_weights() == files["ddgan"]
    monkeypatch.delenv("DDGAN_INCEPTION_WEIGHTS")
    assert find_fid_weights() == files["fid"]
    monkeypatch.delenv("FID_WEIGHTS_PATH")
    assert find_fid_weights() is None
    hub.parent.mkdir(parents=True)
    hub.touch()
    assert find_fid_weights() == hub
    with pytest.raises(InceptionWeightsError, match="missing.pth does not exist"):
        find_fid_weights(tmp_path / "missing.pth")
    monkeypatch.setenv("DDGAN_INCEPTION_WEIGHTS", str(tmp_path / "gone.pth"))
    with pytest.raises(InceptionWeightsError, match=r"\$DDGAN_INCEPTION_WEIGHTS .*gone.pth does not exist"):
        find_fid_weights()


def test_weights_file_is_loaded(tmp_path):
    reference = fid_inception_v3(random_weights=True)
    with torch.no_grad():
        for p in reference.parameters():
            p.mul_(0.5)
    state_dict = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state_dict, tmp_path / FID_WEIGHTS_NAME)  # as old PyTorch versions saved batch norms
    loaded = InceptionV3(weights=tmp_path / FID_WEIGHTS_NAME)
    torch.testing.assert_close(loaded.fc.weight, reference.fc.weight)
    torch.testing.assert_close(loaded.blocks[3][2].branch_pool.conv.weight,
                               reference.Mixed_7c.branch_pool.conv.weight)


def test_wrong_or_corrupt_weights_files(tmp_path):
    (tmp_path / "corrupt.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InceptionWeightsError, match="cannot read Inception weights"):
        fid_inception_v3(tmp_path / "corrupt.pth")
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(InceptionWeightsError, match="is not the FID Inception-v3 weights"):
        fid_inception_v3(tmp_path / "other.pth")
    imagenet_layout = InceptionNetwork(fid=False, num_classes=1000).state_dict()
    with pytest.raises(InceptionWeightsError, match="2 tensors missing or misshapen, 0 unexpected, e.g. fc"):
        load_checked(InceptionNetwork(), imagenet_layout, "imagenet.pth")


def test_cli_without_weights(folders, tmp_path):
    """No weights anywhere (downloads off), a weights variable naming a missing file, a corrupt file."""
    (tmp_path / "w.pth").write_bytes(b"\0" * 10)
    no_weights = [FID_WEIGHTS_NAME, "DDGAN_INCEPTION_WEIGHTS", "--weights", "empty_torch_home"]
    runs = [
        (cli_env(tmp_path), [], no_weights),
        (cli_env(tmp_path, FID_WEIGHTS_PATH="/no/w.pth"), [], ["$FID_WEIGHTS_PATH /no/w.pth"]),
        (cli_env(tmp_path), ["--weights", tmp_path / "w.pth"], ["cannot read Inception", "w.pth"]),
    ]
    processes = [start_command(FID, *folders, "--device", "cpu", *flags, env=env) for env, flags, _ in runs]
    for process, (_, _, expected) in zip(processes, runs, strict=True):
        line = one_error_line(finish(process), 1, notices=True)
        assert ": error: " in line and all(text in line for text in expected), line


# Image sources.

def test_folder_and_sample_arrays_agree(folders):
    folder = open_images(folders[0])
    for array_file in (folders[0].parent / "a.npy", folders[0].parent / "a.npz"):
        arrays = open_images(array_file)
        assert len(arrays) == len(folder) == 4
        for i in range(4):
            torch.testing.assert_close(arrays[i], folder[i], rtol=0, atol=0)


def test_npz_first_array_and_grayscale(tmp_path):
    gray = random_images(3)[..., :1]
    np.savez(tmp_path / "g.npz", gray)
    image = open_images(tmp_path / "g.npz")[0]
    assert image.shape == (3, 32, 32)
    torch.testing.assert_close(image[0], image[2])
    torch.testing.assert_close(image[0], torch.from_numpy(gray[0, ..., 0] / 255).float())


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 3, 8, 8), np.uint8), "transpose"),
    (np.ones((2, 8, 8, 3), np.int64), "integers are read as \\[0, 255\\]; multiply them by 255"),
    (np.full((2, 8, 8, 3), 300.0), r"values in \[300, 300\], outside every pixel range"),
    (np.linspace(-1, 2, 2 * 8 * 8 * 3).reshape(2, 8, 8, 3), r"values in \[-1, 2\], outside every pixel range"),
    (np.full((2, 8, 8, 3), -300, np.int16), "outside every pixel range"),
    (np.linspace(0, 1.9, 2 * 8 * 8 * 3).reshape(2, 8, 8, 3), r"\[0, 1\] overshot, or a nearly black \[0, 255\]"),
    (np.zeros((8, 8, 3), np.uint8), "got shape"),
])
def test_bad_sample_arrays(array, message):
    with pytest.raises(ValueError, match=message):
        check_samples(array)


ENCODINGS = {  # the same pixels p in [0, 255] as each range stores them
    "uint8": lambda p: p, "int64": lambda p: p.astype(np.int64), "float 0..255": lambda p: p.astype(np.float32),
    "float 0..1": lambda p: p.astype(np.float32) / 255, "float -1..1": lambda p: p.astype(np.float64) / 127.5 - 1,
}


@pytest.mark.parametrize("name, low, high", [("uint8", 0, 255), ("int64", 0, 255), ("float 0..255", 0, 255),
                                             ("float 0..1", 0, 1), ("float -1..1", -1, 1)])
def test_the_value_range_is_told_apart(name, low, high):
    assert data.pixel_range(ENCODINGS[name](random_images(3, 8))) == (low, high)


def test_every_range_reads_as_the_same_images():
    """The FID tool's reading (SampleArrayDataset) and mode coverage's (as_images) of one image set do
    not depend on how its values are stored: one rule, ``pixel_range``, for both."""
    from metrics.classifiers import as_images

    pixels = random_images(3, 8)
    expected = torch.from_numpy(pixels / 255).permute(0, 3, 1, 2).float()
    for name, encode in ENCODINGS.items():
        samples = encode(pixels)
        read = torch.stack([SampleArrayDataset(samples)[index] for index in range(3)])
        torch.testing.assert_close(read, expected, atol=1e-6, rtol=0, msg=name)
        torch.testing.assert_close(as_images(samples), expected * 2 - 1, atol=1e-6, rtol=0, msg=name)
        torch.testing.assert_close(as_images(torch.from_numpy(samples).permute(0, 3, 1, 2)), expected * 2 - 1,
                                   atol=1e-6, rtol=0, msg=name)


def test_samples_in_memory_are_read_without_loader_processes(monkeypatch):
    """Workers would only copy an array that is already in memory; image folders keep them."""
    workers = []

    class Recording(data.DataLoader):
        def __init__(self, *args, num_workers=0, **kwargs):
            workers.append(num_workers)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(data, "DataLoader", Recording)
    samples = np.zeros((3, 4, 4, 3), np.uint8)
    means = data.map_batches(lambda batch: batch.mean((2, 3)), SampleArrayDataset(samples), 2, num_workers=4)
    assert workers == [0] and means.shape == (3, 3)


@pytest.mark.parametrize("value, dtype, message", [
    (np.nan, np.float32, "NaN or inf"), (np.inf, np.float64, "NaN or inf"),
    (True, bool, "dtype bool"), (1 + 1j, np.complex64, "dtype complex64"),
])
def test_non_finite_or_non_pixel_samples(value, dtype, message):
    samples = np.full((2, 4, 4, 3), 100, dtype)
    samples[1, 0, 0, 0] = value
    with pytest.raises(ValueError, match=message):
        check_samples(samples)


def test_image_path_dataset_is_pytorch_fids(folders):
    """Without transforms it gives RGB PIL images, as upstream; with ``image_to_tensor`` the tensors."""
    files = sorted(folders[0].iterdir())
    image = ImagePathDataset(files)[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (32, 32)
    tensor = ImagePathDataset(files, transforms=image_to_tensor)[0]
    torch.testing.assert_close(tensor, torch.from_numpy(np.asarray(image) / 255).permute(2, 0, 1).float())


def test_16_bit_png_keeps_its_contrast(tmp_path):
    """A 16-bit grey PNG (mode I;16) is scaled to 8 bits, not clipped to white (utils.images.to_rgb)."""
    values = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
    (tmp_path / "deep").mkdir()
    Image.fromarray(values).save(tmp_path / "deep" / "a.png")
    assert Image.open(tmp_path / "deep" / "a.png").mode.startswith("I;16")
    image = open_images(tmp_path / "deep")[0]
    expected = torch.from_numpy(np.rint(values / 65535 * 255) / 255).float()
    torch.testing.assert_close(image[1], expected)
    assert image.min() == 0 and image.max() == 1


def test_stored_npz_is_memory_mapped(tmp_path):
    images = random_images(3)
    np.savez(tmp_path / "stored.npz", samples=images)
    np.savez_compressed(tmp_path / "packed.npz", samples=images)
    mapped, loaded = load_sample_array(tmp_path / "stored.npz"), load_sample_array(tmp_path / "packed.npz")
    assert isinstance(mapped, np.memmap) and not isinstance(loaded, np.memmap)
    np.testing.assert_array_equal(mapped, images)
    np.testing.assert_array_equal(loaded, images)


@pytest.mark.parametrize("arrays, message", [
    ({"mu": np.zeros(4)}, "has mu but no sigma"),
    ({"mean": np.zeros(4), "cov": np.eye(4)}, "holds the arrays mean, cov: neither FID statistics"),
    ({"mu": np.zeros(4), "sigma": np.eye(4)}, "holds FID statistics"),
    ({}, "holds no arrays"),
])
def test_npz_keys_that_fit_neither_use(tmp_path, arrays, message):
    np.savez(tmp_path / "x.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        open_images(tmp_path / "x.npz")


def test_sample_folders_must_be_whole(tmp_path):
    """A folder written by test_ddgan.py is scored only when its manifest says complete and nothing
    else is mixed in; samples.npz of such a folder is checked the same way."""
    folder = write_pngs(tmp_path / "run", random_images(3))
    np.savez(folder / "samples.npz", samples=random_images(3))
    outputs.write_manifest(folder, complete=True, count=3)
    assert len(open_images(folder)) == len(open_images(folder / "samples.npz")) == 3
    Image.fromarray(random_images(1)[0]).save(folder / "old.png")
    for source in (folder, folder / "samples.npz"):
        with pytest.raises(ValueError, match="mixes a sampling run of 3 images with other files"):
            open_images(source)
    outputs.write_manifest(folder, complete=False, count=3)
    with pytest.raises(ValueError, match="unfinished sampling run"):
        open_images(folder)


def test_activations_from_paths_or_dataset(folders, network):
    files = sorted(folders[0].iterdir())
    by_path = get_activations(files, network, batch_size=3, dims=64, num_workers=0)
    by_dataset = get_activations(open_images(folders[0]), network, batch_size=4, dims=64, num_workers=0)
    assert by_path.shape == (4, 64) and by_path.dtype == np.float64
    np.testing.assert_allclose(by_path, by_dataset, rtol=1e-5)
    with pytest.raises(ValueError, match="dims=2048"):
        get_activations(files[:1], network, dims=2048, num_workers=0)


def test_images_of_different_sizes(tmp_path, network):
    write_pngs(tmp_path / "mixed", random_images(1, 32))
    write_pngs(tmp_path / "other", random_images(1, 16))
    (tmp_path / "other" / "0.png").rename(tmp_path / "mixed" / "1.png")
    with pytest.raises(ValueError, match="32x32 vs 16x16|16x16 vs 32x32"):
        get_activations(open_images(tmp_path / "mixed"), network, dims=64, num_workers=0)


# FID end to end, with the random network.

def test_fid_whole_path(folders):
    fid = calculate_fid_given_paths(folders, 2, "cpu", 192, num_workers=0, random_weights=True)
    itself = calculate_fid_given_paths([folders[0]] * 2, 4, "cpu", 192, num_workers=0, random_weights=True)
    assert np.isfinite(fid) and fid > 1e-3
    assert itself == pytest.approx(0, abs=1e-3)


def test_sample_arrays_give_the_folder_statistics(folders, network):
    mu, sigma = compute_statistics_of_path(folders[0], network, 4, 64, "cpu", num_workers=0)
    mu_npz, sigma_npz = compute_statistics_of_path(folders[0].parent / "a.npz", network, 4, 64, "cpu", 0)
    np.testing.assert_allclose(mu_npz, mu, rtol=1e-6)
    np.testing.assert_allclose(sigma_npz, sigma, rtol=1e-5, atol=1e-12)


def test_saved_statistics_round_trip(folders, tmp_path):
    stats = tmp_path / "a_stats.npz"
    saved = run_command(FID, "--save-stats", folders[0], stats, "--dims", "64", *FAST, env=cli_env(tmp_path))
    assert saved.returncode == 0, saved.stderr
    with np.load(stats) as data:
        assert data["mu"].shape == (64,) and data["sigma"].shape == (64, 64)
    from_stats = run_command(FID, stats, folders[1], "--dims", "64", *FAST, env=cli_env(tmp_path))
    assert from_stats.returncode == 0, from_stats.stderr
    printed = float(from_stats.stdout.split("FID:")[1])
    from_folder = calculate_fid_given_paths(folders, 4, "cpu", 64, num_workers=0, random_weights=True)
    assert printed == pytest.approx(from_folder, rel=1e-4)


def test_two_statistics_files_need_no_network(tmp_path, offline):
    for name, shift in (("s1.npz", 0.0), ("s2.npz", 2.0)):
        np.savez(tmp_path / name, mu=np.full(3, shift), sigma=np.eye(3))
    fid = calculate_fid_given_paths([tmp_path / "s1.npz", tmp_path / "s2.npz"], 50, "cpu", 2048)
    assert fid == pytest.approx(12.0)


def test_fid_of_paths_is_the_distance_of_the_path_statistics(folders):
    """The command line's path (the Evaluator) and pytorch-fid's pieces, composed by hand, agree."""
    network = shared_inception("cpu", random_weights=True, dims=64)
    stats = [compute_statistics_of_path(folder, network, 4, 64, "cpu", num_workers=0) for folder in folders]
    by_hand = calculate_frechet_distance(*stats[0], *stats[1])
    assert calculate_fid_given_paths(folders, 4, "cpu", 64, num_workers=0, random_weights=True) == \
        pytest.approx(by_hand, rel=1e-6)


def test_save_stats_adds_the_npz_suffix(folders, tmp_path):
    """As np.savez: "stats" is written as stats.npz; an existing stats.npz is never replaced."""
    fid_score.save_fid_stats([folders[0], tmp_path / "stats"], 4, "cpu", 64, num_workers=0, random_weights=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.npz"]
    assert scores.is_stats_file(tmp_path / "stats.npz")
    with pytest.raises(ValueError, match="stats.npz already exists"):
        fid_score.save_fid_stats([folders[0], tmp_path / "stats"], 4, "cpu", 64, random_weights=True)


def test_non_finite_statistics_are_refused(tmp_path):
    np.savez(tmp_path / "nan.npz", mu=np.array([0.0, np.nan]), sigma=np.eye(2))
    with pytest.raises(ValueError, match="NaN or inf"):
        scores.load_statistics(tmp_path / "nan.npz")
    with pytest.raises(ValueError, match="second statistics: mu or sigma holds NaN or inf"):
        calculate_frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.full((2, 2), np.inf))
    np.savez(tmp_path / "flat.npz", mu=np.zeros(3), sigma=np.zeros(3))
    with pytest.raises(ValueError, match=r"sigma \(D, D\)"):
        scores.load_statistics(tmp_path / "flat.npz")


# Bad inputs on the command line: the rows of METRIC_CASES in test_bad_inputs.py; here the one
# that needs the network to run (the image is read by a loader worker).

def test_cli_unreadable_image_in_a_worker(folders, tmp_path):
    broken = write_pngs(tmp_path / "broken", random_images(2))
    (broken / "1.png").write_bytes(b"not a png")
    result = run_command(FID, broken, folders[1], "--dims", "64", "--random-weights", "--num-workers", "1",
                         env=cli_env(tmp_path))
    line = one_error_line(result, 1, notices=True)
    assert ": error: " in line and "cannot read image" in line and "1.png" in line


def test_help_documents_the_testing_aid():
    assert "testing aid" in " ".join(fid_score.build_parser().format_help().split())
