"""utils/sampling.py: quantisation, seeding, batching, the background writer, grids, timing."""

import errno
import json
import os

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from tests._data_formats import read_pngs
from tests.conftest import rel_error, tiny_config, tiny_generator
from utils import sampling


@pytest.fixture(scope="module")
def sampler():
    """The tiny generator with T = 2: every sampling test runs the chain, two steps are enough."""
    config = tiny_config(num_timesteps=2)
    return sampling.Sampler(tiny_generator(config), config, "cpu")


def test_to_uint8_matches_save_image(tmp_path):
    """Same bytes as torchvision's save_image (round half up after clamping to [0, 1])."""
    torch.manual_seed(0)
    x = torch.cat([torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]), torch.rand(3 * 4 * 4 - 5) * 2.2 - 1.1])
    x = x.reshape(1, 3, 4, 4)
    torchvision.utils.save_image((x + 1) / 2, tmp_path / "tv.png")
    ours = sampling.to_uint8(x)
    assert ours.shape == (1, 4, 4, 3) and ours.dtype == torch.uint8
    np.testing.assert_array_equal(ours[0].numpy(), np.asarray(Image.open(tmp_path / "tv.png")))
    assert ours[0, 0, :, 0].tolist() == [0, 0, 128, 255] and ours[0, 1, 0, 0] == 255


@pytest.mark.parametrize("total, size, expected", [(10, 4, [4, 4, 2]), (8, 4, [4, 4]), (3, 8, [3])])
def test_batch_sizes(total, size, expected):
    assert sampling.batch_sizes(total, size) == expected


def test_first_batch_is_reference_sampling(reference):
    """The fixture: seed 42, x_T = randn(4, 3, 32, 32) on the CPU, then the chain."""
    entry = reference["sampling"]
    generator = tiny_generator(entry["config"])
    generator.load_state_dict(reference["generator_32"]["state_dict"])
    sampler = sampling.Sampler(generator, entry["config"], "cpu")
    torch.manual_seed(entry["seed"])
    assert torch.equal(sampler.noise(4), entry["x_init"])
    torch.manual_seed(entry["seed"])
    assert rel_error(sampler(4), entry["out"]) < 1e-4


def test_seeded_batches_are_reproducible(sampler):
    first = sampling.sample_array(sampler, 5, 2, seed=1)
    assert first.shape == (5, 16, 16, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, sampling.sample_array(sampler, 5, 2, seed=1))
    assert not np.array_equal(first, sampling.sample_array(sampler, 5, 2, seed=2))
    np.testing.assert_array_equal(first[:4], sampling.sample_array(sampler, 4, 2, seed=1))


def test_npz_stream_round_trip(tmp_path):
    data = np.arange(5 * 2 * 3 * 3, dtype=np.uint8).reshape(5, 2, 3, 3)
    stream = sampling.NpzStream(str(tmp_path / "a.npz"), data.shape)
    for chunk in (data[:2], data[2:4], data[4:]):
        stream.write(chunk)
    stream.close()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["samples"], data)
    assert os.listdir(tmp_path) == ["a.npz"]


def test_npz_stream_short_array_is_not_kept(tmp_path):
    stream = sampling.NpzStream(str(tmp_path / "a.npz"), (3, 2, 2, 3))
    stream.write(np.zeros((2, 2, 2, 3), np.uint8))
    stream.close()
    assert os.listdir(tmp_path) == []


def manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_writer_files_equal_batches(tmp_path):
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8) for n in (3, 3, 1)]
    with sampling.SampleWriter(str(tmp_path), 7, (6, 5, 3), workers=2, max_pending=1) as writer:
        for batch in batches:
            writer.put(batch)
    everything = np.concatenate(batches)
    np.testing.assert_array_equal(read_pngs(tmp_path, 7), everything)
    np.testing.assert_array_equal(np.load(tmp_path / "samples.npz")["samples"], everything)
    assert manifest(tmp_path) | {"written": None} == {"complete": True, "count": 7, "image_shape": [6, 5, 3],
                                                      "written": None}


def test_writer_grey_images(tmp_path):
    batch = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    with sampling.SampleWriter(str(tmp_path), 2, (4, 4, 1)) as writer:
        writer.put(batch)
    assert Image.open(tmp_path / "1.png").mode == "L"
    np.testing.assert_array_equal(read_pngs(tmp_path, 2), batch[..., 0])


def test_writer_replaces_an_earlier_run(tmp_path):
    """5 samples, then 2 into the same folder: the 3 stale PNGs and the old samples.npz are gone."""
    for count in (5, 2):
        with sampling.SampleWriter(str(tmp_path), count, (4, 4, 3)) as writer:
            writer.put(np.full((count, 4, 4, 3), count, np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["0.png", "1.png", "manifest.json", "samples.npz"]
    assert np.load(tmp_path / "samples.npz")["samples"].max() == 2 and manifest(tmp_path)["count"] == 2


def test_a_stopped_run_is_marked_incomplete(tmp_path):
    """An exception (Ctrl-C, a crash of the sampler) while sampling: the PNGs so far stay, no
    samples.npz, and the manifest says incomplete, so metrics refuse the folder."""
    with pytest.raises(KeyboardInterrupt), sampling.SampleWriter(str(tmp_path), 4, (4, 4, 3)) as writer:
        writer.put(np.zeros((2, 4, 4, 3), np.uint8))
        raise KeyboardInterrupt
    assert manifest(tmp_path)["complete"] is False
    assert sorted(os.listdir(tmp_path)) == ["0.png", "1.png", "manifest.json"]


@pytest.mark.parametrize("code, message", [(errno.ENOSPC, "disk full while writing samples to"),
                                           (errno.EIO, "failed: [Errno 5]")])
def test_writer_reports_write_errors(tmp_path, monkeypatch, code, message):
    """A failed write surfaces as one OSError saying what was kept; no samples.npz (not even an old one)."""
    def fail_second(path, image):
        if path.endswith("1.png"):
            raise OSError(code, os.strerror(code))
        Image.fromarray(image).save(path)

    monkeypatch.setattr(sampling, "_save_png", fail_second)
    writer = sampling.SampleWriter(str(tmp_path), 4, (4, 4, 3))
    writer.put(np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(OSError) as info:
        writer.close()
    assert message in str(info.value)
    assert "the first 0 of 4 samples saved as PNG, no samples.npz, the folder not marked complete" in str(info.value)
    assert "\n" not in str(info.value)
    assert manifest(tmp_path)["complete"] is False
    assert not (tmp_path / "samples.npz").exists() and not (tmp_path / "samples.npz.partial").exists()


def test_disk_full_at_the_last_manifest(tmp_path, monkeypatch):
    """Every sample written, then no room for the final manifest: samples.npz is whole, the folder
    stays marked incomplete, and the error says both."""
    writer = sampling.SampleWriter(str(tmp_path), 2, (4, 4, 3))
    writer.put(np.zeros((2, 4, 4, 3), np.uint8))

    def full(folder, **fields):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sampling.outputs, "write_manifest", full)
    with pytest.raises(OSError, match="disk full .*the first 2 of 2 samples saved as PNG, samples.npz complete"):
        writer.close()
    assert manifest(tmp_path)["complete"] is False


def test_write_samples_end_to_end(tmp_path, sampler):
    ckpt = tmp_path / "netG_12.pth"
    ckpt.write_bytes(b"0123456789")
    path = sampling.write_samples(sampler, str(tmp_path / "out"), 3, 2, seed=5, checkpoint=str(ckpt))
    np.testing.assert_array_equal(np.load(path)["samples"], sampling.sample_array(sampler, 3, 2, seed=5))
    record = manifest(tmp_path / "out")
    assert record["complete"] and (record["count"], record["seed"], record["batch_size"]) == (3, 5, 2)
    assert record["checkpoint"] | {"modified": None} == {"path": str(ckpt), "bytes": 10, "epoch": 12,
                                                         "modified": None}


def test_save_grid(tmp_path, sampler):
    sampling.save_grid(sampler, 3, seed=0, path=str(tmp_path / "g" / "grid.png"))
    assert Image.open(tmp_path / "g" / "grid.png").size == (2 + 3 * 18, 2 + 18)


def test_time_sampling(sampler):
    mean, std = sampling.time_sampling(sampler, 2, repeats=3, warmup=1)
    assert mean > 0 and std >= 0
