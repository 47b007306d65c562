"""pytorch_fid next to pytorch-fid 0.3.0 itself: with the same weights, the same features, FID and
statistics file.

At set-up pytorch-fid 0.3.0 is installed from the package registry without dependencies into a
temporary folder and imported as ``upstream_pytorch_fid`` (its package name is ours); the test is
skipped when that install fails.  No weights file can be downloaded here: upstream's download is
replaced by the state dict of our seeded random network, so both networks hold the same weights.
"""

import importlib
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pytorch_fid import fid_score
from pytorch_fid.inception import InceptionV3, fid_inception_v3
from tests._data_formats import random_images, write_pngs
from tests.conftest import cli_env, run_command

UPSTREAM = "pytorch-fid==0.3.0"
pytestmark = pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")  # theirs


def install(target):
    """pip install UPSTREAM into ``target``; skips the test when the registry cannot be reached."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
               "--target", str(target), UPSTREAM]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    except subprocess.CalledProcessError as err:
        pytest.skip(f"could not install {UPSTREAM} from the package registry: {err.stderr.strip()[-300:]}")
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"could not install {UPSTREAM} from the package registry: {err}")


def _ours():
    return {name: module for name, module in sys.modules.items()
            if name == "pytorch_fid" or name.startswith("pytorch_fid.")}


def import_as_upstream(folder):
    """Import the pytorch_fid package in ``folder`` as upstream_pytorch_fid(.inception, .fid_score).

    Its modules import each other as ``pytorch_fid.*``, so ours step out of sys.modules while
    they load, and come back after."""
    saved = _ours()
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(folder))
    try:
        modules = {name: importlib.import_module(f"pytorch_fid.{name}") for name in ("inception", "fid_score")}
    finally:
        sys.path.remove(str(folder))
        for name in list(_ours()):
            sys.modules["upstream_" + name] = sys.modules.pop(name)
        sys.modules.update(saved)
    return SimpleNamespace(package=sys.modules["upstream_pytorch_fid"], **modules)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """pytorch-fid 0.3.0, its weights download answered with our random network's state dict."""
    target = tmp_path_factory.mktemp("upstream")
    install(target)
    module = import_as_upstream(target)
    state = fid_inception_v3(random_weights=True).state_dict()
    module.inception.load_state_dict_from_url = lambda *args, **kwargs: state
    return module


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two folders of small PNGs (one of them grey) and their paths as strings (as upstream wants)."""
    root = tmp_path_factory.mktemp("peer")
    a = write_pngs(root / "a", random_images(4, seed=11))
    b = write_pngs(root / "b", random_images(3, seed=12))
    grey = random_images(1, seed=13)[0, ..., 0]
    Image.fromarray(grey).save(a / "100_grey.png")
    return str(a), str(b)


def test_upstream_is_the_release(upstream):
    assert upstream.package.__version__ == "0.3.0"
    assert upstream.fid_score.InceptionV3 is upstream.inception.InceptionV3 is not InceptionV3


def test_same_features(upstream, images):
    files = sorted(str(path) for path in Path(images[0]).iterdir())
    theirs = upstream.fid_score.get_activations(files, upstream.inception.InceptionV3().eval(), batch_size=5,
                                                dims=2048, device="cpu", num_workers=0)
    ours = fid_score.get_activations(files, InceptionV3(random_weights=True), batch_size=5, dims=2048,
                                     device="cpu", num_workers=0)
    assert theirs.shape == ours.shape == (5, 2048)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert ours.std() > 0.01


def test_same_fid(upstream, images):
    theirs = upstream.fid_score.calculate_fid_given_paths(list(images), 4, "cpu", 64, num_workers=0)
    ours = fid_score.calculate_fid_given_paths(list(images), 4, "cpu", 64, num_workers=0, random_weights=True)
    assert ours == pytest.approx(theirs, rel=1e-5)
    assert ours > 1e-3


def test_same_statistics_file(upstream, images, tmp_path):
    """Ours from the command line (--save-stats without the suffix), theirs from save_fid_stats; each
    package reads the other's file."""
    upstream.fid_score.save_fid_stats([images[0], str(tmp_path / "theirs.npz")], 4, "cpu", 64, num_workers=0)
    saved = run_command("-m pytorch_fid.fid_score", "--save-stats", images[0], tmp_path / "ours", "--dims", "64",
                        "--random-weights", "--num-workers", "0", "--device", "cpu", env=cli_env(tmp_path))
    assert saved.returncode == 0, saved.stderr
    with np.load(tmp_path / "ours.npz") as ours, np.load(tmp_path / "theirs.npz") as theirs:
        assert sorted(ours.files) == sorted(theirs.files) == ["mu", "sigma"]
        np.testing.assert_allclose(ours["mu"], theirs["mu"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(ours["sigma"], theirs["sigma"], rtol=1e-4, atol=1e-7)
    stats = [str(tmp_path / "ours.npz"), str(tmp_path / "theirs.npz")]
    assert fid_score.calculate_fid_given_paths(stats, 4, "cpu", 64) == pytest.approx(0, abs=1e-6)
    assert upstream.fid_score.calculate_fid_given_paths(stats[::-1], 4, "cpu", 64) == pytest.approx(0, abs=1e-6)
