"""test_ddgan.py through its command line: reproducing the reference, checkpoint formats, outputs, errors."""

import errno
import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from tests._data_formats import random_images, read_pngs, write_pngs
from tests._eval_helpers import FakeInception, build_fake_inception, constant_digit_classifier, save_own, save_plain
from tests.conftest import cli_env, config_flags, run_command, tiny_config, tiny_generator
from utils import sampling


@pytest.fixture(scope="module")
def config():
    """The tiny generator with T = 2: the commands sample, two steps are enough."""
    return tiny_config(num_timesteps=2)


@pytest.fixture
def own_ckpt(tmp_path, config):
    return save_own(tmp_path / "netG_7.pth", config)


def assert_fails(result, *fragments, code=1):
    """Non-zero exit with a short message (no traceback) containing every fragment."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_reproduces_reference_sampling(tmp_path, reference):
    """Seed 42, x_T = randn(4, 3, 32, 32), then the chain: the reference's samples, pixel for pixel."""
    entry = reference["sampling"]
    state = reference["generator_32"]["state_dict"]
    ckpt = tmp_path / "netG_1200.pth"
    torch.save({"module." + k: v for k, v in state.items()}, ckpt)
    out = tmp_path / "samples"
    result = run_command("test_ddgan.py", "--checkpoint", ckpt, "--seed", 42, "--batch_size", 4, "--num_samples", 4,
                         "--sample_dir", out, "--device", "cpu", *config_flags(entry["config"]))
    assert result.returncode == 0, result.stderr
    expected = sampling.to_uint8(entry["out"]).numpy()
    # Exact: the reference's values sit at least 2e-5 (in 1/255 units) from a rounding boundary,
    # far more than the float differences (relative 2e-7) between the two implementations.
    np.testing.assert_array_equal(read_pngs(out, 4), expected)
    np.testing.assert_array_equal(np.load(out / "samples.npz")["samples"], expected)


def test_own_checkpoint_needs_no_model_flags(tmp_path, config, own_ckpt):
    """5 samples in batches of 2 (a partial last batch): files equal in-process sampling."""
    out = tmp_path / "out"
    result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--num_samples", 5, "--batch_size", 2,
                         "--sample_dir", out, "--seed", 3, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    samples = np.load(out / "samples.npz")["samples"]
    assert samples.shape == (5, 16, 16, 3) and samples.dtype == np.uint8
    np.testing.assert_array_equal(read_pngs(out, 5), samples)
    sampler = sampling.Sampler(tiny_generator(config), config, "cpu")
    np.testing.assert_array_equal(samples, sampling.sample_array(sampler, 5, 2, seed=3))
    assert not (out / "5.png").exists()


def test_plain_state_dict_with_model_flags(tmp_path, config):
    """A bare (non-DDP) reference-layout file plus the model flags: the same images as its weights give."""
    plain = save_plain(tmp_path / "plain.pth", config)
    result = run_command("test_ddgan.py", "--checkpoint", plain, "--num_samples", 2, "--batch_size", 2,
                         "--sample_dir", tmp_path / "b", "--device", "cpu", *config_flags(config))
    assert result.returncode == 0, result.stderr
    sampler = sampling.Sampler(tiny_generator(config), config, "cpu")
    np.testing.assert_array_equal(read_pngs(tmp_path / "b", 2), sampling.sample_array(sampler, 2, 2, seed=42))


def test_flags_contradicting_plain_checkpoint_list_shapes(tmp_path, config):
    plain = save_plain(tmp_path / "netG_1200.pth", config, ddp=True)
    wider = config_flags({**config, "num_channels_dae": 16})  # a wider network, the same layout
    result = run_command("test_ddgan.py", "--checkpoint", plain, "--device", "cpu", *wider)
    assert_fails(result, "does not fit the model flags", "checkpoint (")
    assert re.search(r"checkpoint \(\d+(, \d+)*\) vs model \(\d+", result.stderr)


def test_flags_contradicting_own_checkpoint_config(tmp_path, config, own_ckpt):
    result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--num_channels_dae", 16, "--nz", config["nz"],
                         "--device", "cpu")
    assert_fails(result, "--num_channels_dae: checkpoint has 8, command line says 16")
    assert "--nz" not in result.stderr


def test_plain_checkpoint_without_flags_lists_mismatch(tmp_path, config):
    """Defaults (the CIFAR-10 network) do not fit a tiny reference file: say so, do not crash."""
    plain = save_plain(tmp_path / "netG_5.pth", config, ddp=True)
    result = run_command("test_ddgan.py", "--checkpoint", plain, "--device", "cpu")
    assert_fails(result, "does not fit the model flags", "pass the flags the checkpoint was trained with")


def test_missing_checkpoint_names_default_path(tmp_path):
    result = run_command("test_ddgan.py", "--save_dir", tmp_path / "runs", "--exp", "myrun", "--epoch_id", 5,
                         "--device", "cpu")
    assert_fails(result, "not found", "runs/dd_gan/cifar10/myrun/netG_5.pth")


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "netG_1.pth"
    bad.write_bytes(b"not a checkpoint")
    assert_fails(run_command("test_ddgan.py", "--checkpoint", bad, "--device", "cpu"), "cannot read", str(bad))


def test_grid_without_num_samples(tmp_path, own_ckpt):
    """Like the reference: one grid of --batch_size images (8 per row, 2 px padding)."""
    result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--batch_size", 4,
                         "--output_dir", tmp_path / "grid", "--dataset", "stacked_digits", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    grid = Image.open(tmp_path / "grid" / "samples_stacked_digits.png")
    assert grid.size == (2 + 4 * 18, 2 + 18)
    assert not (tmp_path / "generated_samples").exists()


def test_measure_time_prints_seconds(own_ckpt):
    result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--measure_time", "--time_repeats", 2,
                         "--time_warmup", 1, "--batch_size", 2, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    match = re.search(r"sampling time: ([0-9.]+) \+/- ([0-9.]+) s per batch of 2", result.stdout)
    assert match and float(match.group(1)) > 0


@pytest.mark.parametrize("flags, message", [
    (["--mode_coverage", "--dataset", "cifar10"], "--mode_coverage needs --dataset stacked_digits"),
    (["--compute_pr"], "pr needs --real_img_dir"),
    (["--metrics", "fid,psnr"], "unknown metric 'psnr' in 'fid,psnr': choose from fid, is, pr, modes"),
    (["--metrics", "is", "--num_samples", "5"], "is needs --num_samples 10 or more (one per split)"),
    (["--image_size", "20", "--ch_mult", "1", "2", "2", "2"], "not divisible by 2**3"),
    (["--batch_size", "0"], "0 is out of range"),
])
def test_bad_flag_combinations(own_ckpt, flags, message):
    assert_fails(run_command("test_ddgan.py", "--checkpoint", own_ckpt, *flags), message, code=2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(own_ckpt):
    result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--device", "cuda")
    assert_fails(result, "CUDA is not available", code=2)


def test_missing_default_fid_stats(tmp_path, own_ckpt):
    """Fails before sampling, saying how to make the statistics file."""
    out = tmp_path / "samples"
    result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--compute_fid", "--dataset", "folder",
                         "--sample_dir", out, "--device", "cpu")
    assert_fails(result, "folder_stats.npz", "python -m pytorch_fid.fid_score --save-stats")
    assert not out.exists()


def test_missing_real_img_dir(tmp_path, own_ckpt):
    result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--compute_fid",
                         "--real_img_dir", tmp_path / "nowhere", "--device", "cpu")
    assert_fails(result, "nowhere does not exist")


@pytest.mark.parametrize("via, message", [
    ("env", "$DDGAN_INCEPTION_WEIGHTS"), ("flag", "absent.pth"), ("nothing", "DDGAN_NO_DOWNLOAD")])
def test_missing_inception_weights(tmp_path, own_ckpt, via, message):
    """Named but absent, or nowhere (hub folder empty, downloads off): one line, before any sampling."""
    absent = str(tmp_path / "absent.pth")
    env = {"DDGAN_INCEPTION_WEIGHTS": absent if via == "env" else "", "FID_WEIGHTS_PATH": "",
           "TORCH_HOME": str(tmp_path / "hub")}
    flags = ["--inception_weights", absent] if via == "flag" else []
    real = write_pngs(tmp_path / "real", random_images(4, 16))
    result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--compute_fid", "--real_img_dir", real,
                         "--num_samples", 2, "--sample_dir", tmp_path / "samples", "--device", "cpu", *flags,
                         env=cli_env(**env))
    assert_fails(result, message, "pt_inception-2015-12-05-6726825d.pth")
    assert not (tmp_path / "samples").exists()


@pytest.fixture
def fake_inception(monkeypatch):
    """The metrics package builds FakeInception instead of the FID network (a fresh process-wide cache)."""
    build_fake_inception(monkeypatch, FakeInception)
    return FakeInception(image_size=16)


def test_fid_is_and_precision_recall(tmp_path, own_ckpt, monkeypatch, capsys, fake_inception):
    """The statistics and features of the written samples and the real folder reach the metrics.

    The Fréchet distance itself (a 2048 x 2048 sqrtm, ~20 s here) is metrics.scores' and tested in
    test_fid.py: the FID metric's call is replaced by a recorder.
    """
    import test_ddgan
    from metrics import registry
    from metrics.scores import compute_precision_recall, inception_score_from_logits
    from pytorch_fid import fid_score

    seen = []
    monkeypatch.setattr(registry, "calculate_frechet_distance", lambda *stats: seen.append(stats) or 12.5)
    real, out = write_pngs(tmp_path / "real", random_images(6, 16)), tmp_path / "samples"
    test_ddgan.main(["--checkpoint", str(own_ckpt), "--compute_fid", "--compute_pr", "--metrics", "is",
                     "--real_img_dir", str(real), "--num_samples", "10", "--sample_dir", str(out),
                     "--device", "cpu", "--num_workers", "0"])
    printed = capsys.readouterr().out
    assert "FID = 12.5000 (10 samples)" in printed
    paths = [str(out / "samples.npz"), str(real)]
    expected = [fid_score.compute_statistics_of_path(path, fake_inception, 4, 2048, "cpu", 0) for path in paths]
    for got, want in zip(seen[0], [*expected[0], *expected[1]], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # float32 features, other batch sizes
    (fake_features, fake_logits), (real_features, _) = (
        evaluator_outputs(fake_inception, path) for path in paths)
    expected_pr = compute_precision_recall(real_features, fake_features, k=3)
    precision, recall = map(float, re.search(r"precision = (\S+), recall = (\S+) ", printed).groups())
    assert (precision, recall) == pytest.approx(expected_pr, abs=1e-4)
    mean, std = map(float, re.search(r"Inception Score = (\S+) ± (\S+) \(10 samples\)", printed).groups())
    assert (mean, std) == pytest.approx(inception_score_from_logits(fake_logits, 10), abs=1e-4)


def evaluator_outputs(network, path):
    from metrics.evaluator import inception_outputs
    from metrics.images import open_images
    from metrics.registry import Options

    return inception_outputs(open_images(path), network, Options(batch_size=4))


def test_samples_and_manifest(tmp_path, own_ckpt):
    """A second run into the same folder replaces the first one's files; the manifest names the run."""
    out = tmp_path / "out"
    for count in (4, 2):
        result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--num_samples", count, "--batch_size", 2,
                             "--sample_dir", out, "--seed", 9, "--device", "cpu")
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "manifest.json", "samples.npz"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and (manifest["count"], manifest["seed"], manifest["batch_size"]) == (2, 9, 2)
    assert (manifest["checkpoint"]["path"], manifest["checkpoint"]["epoch"]) == (str(own_ckpt), 7)


def test_disk_full_while_sampling(tmp_path, own_ckpt, monkeypatch, capsys):
    """One line saying "disk full" and what the folder holds; samples.npz is not kept, metrics refuse it."""
    import test_ddgan

    def full(path, image):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(sampling, "_save_png", full)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        test_ddgan.main(["--checkpoint", str(own_ckpt), "--num_samples", "4", "--batch_size", "2",
                         "--sample_dir", str(out), "--device", "cpu"])
    message = str(info.value.code)
    assert message.startswith(f"test_ddgan.py: error: disk full while writing samples to {out} (the first 0 of 4")
    assert "no samples.npz, the folder not marked complete" in message and "\n" not in message
    assert not (out / "samples.npz").exists()
    assert json.loads((out / "manifest.json").read_text())["complete"] is False


def test_precision_recall_refuses_statistics_file(tmp_path, own_ckpt):
    stats = tmp_path / "stats.npz"
    np.savez(stats, mu=np.zeros(2048), sigma=np.eye(2048))
    result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--compute_pr", "--real_img_dir", stats,
                         "--num_samples", 4, "--sample_dir", tmp_path / "samples", "--device", "cpu")
    assert_fails(result, "pr needs real images", "holds FID statistics")
    assert not (tmp_path / "samples").exists()


def test_empty_real_folder(tmp_path, own_ckpt):
    (tmp_path / "real").mkdir()
    result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--compute_fid",
                         "--real_img_dir", tmp_path / "real", "--device", "cpu",
                         env=cli_env(DDGAN_INCEPTION_WEIGHTS=tmp_path / "absent.pth"))
    assert_fails(result, "no image files", "real")


def test_mode_coverage_of_a_single_mode(tmp_path, own_ckpt):
    """Every sample read as 777: one mode covered, reverse KL = log(1000)."""
    classifier = constant_digit_classifier(tmp_path / "digits.pt")
    result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--dataset", "stacked_digits", "--mode_coverage",
                         "--mode_classifier", classifier, "--num_mode_samples", 6, "--batch_size", 4, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert f"modes covered = 1 / 1000, reverse KL = {np.log(1000):.4f} (6 samples)" in result.stdout
    assert "digit classifier accuracy (its own test digits): 0.5000" in result.stdout


def test_stackmnist_mode_coverage_needs_classifier(tmp_path, own_ckpt):
    result = run_command("test_ddgan.py", "--checkpoint", own_ckpt, "--dataset", "stackmnist", "--mode_coverage",
                         "--device", "cpu", env=cli_env(XDG_CACHE_HOME=tmp_path))  # no cached classifier there
    assert_fails(result, "needs an MNIST classifier", "--train_mnist DATADIR", "--mode_classifier")


README_COMMANDS = [
    "--dataset cifar10 --exp ddgan_cifar10_exp1 --num_channels 3 --num_channels_dae 128 --num_timesteps 4 "
    "--num_res_blocks 2 --nz 100 --z_emb_dim 256 --n_mlp 4 --ch_mult 1 2 2 2 --epoch_id 1200",
    "--dataset celeba_256 --image_size 256 --exp ddgan_celebahq_exp1 --num_channels 3 --num_channels_dae 64 "
    "--ch_mult 1 1 2 2 4 4 --num_timesteps 2 --num_res_blocks 2  --epoch_id 550",
    "--dataset lsun --image_size 256 --exp ddgan_lsun_exp1 --num_channels 3 --num_channels_dae 64 "
    "--ch_mult 1 1 2 2 4 4  --num_timesteps 4 --num_res_blocks 2  --epoch_id 400 --compute_fid "
    "--real_img_dir /data/real",
]


@pytest.mark.parametrize("command", README_COMMANDS)
def test_readme_commands_parse(command):
    """The original command lines: the reference's run folder layout, their flags marked as given."""
    import test_ddgan

    args = test_ddgan.parse_args(command.split())
    assert args.checkpoint == f"./saved_info/dd_gan/{args.dataset}/{args.exp}/netG_{args.epoch_id}.pth"
    assert {"num_channels_dae", "ch_mult", "num_timesteps"} <= set(args.explicit)
    assert "beta_min" not in args.explicit and args.seed == 42 and args.batch_size == 200
    assert args.write_samples == args.compute_fid and args.num_samples == 50000
    assert args.sample_dir == f"./generated_samples/{args.dataset}"
