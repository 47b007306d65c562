"""Nothing lost: a resumed run is the run that was never stopped; signals and kills leave
intact, resumable files; a non-finite loss stops without overwriting the last good state."""

import json
import math
import os
import random
import signal
import time

import numpy as np
import pytest
import torch

import train_ddgan
from tests._data_formats import random_images, write_image_folder
from tests._train_helpers import TINY, run_cli, start_cli
from utils import checkpoint, training
from utils.loss import DDGANLoss
from utils.rng import rng_state, set_rng_state

RUN = ("dd_gan", "folder", "experiment_cifar_default")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """16 images of 20 x 20 px: resized, cropped and flipped at random (torch's RNG) to 16 px."""
    root = tmp_path_factory.mktemp("images")
    write_image_folder(str(root), random_images(16, 20, 20))
    return root


def argv(images, save_dir, *extra):
    return [*TINY, "--dataset", "folder", "--datadir", str(images), "--save_dir", str(save_dir), "--use_ema",
            "--ema_decay", "0.9", "--lazy_reg", "2", "--save_content", "--save_content_every", "1",
            "--save_ckpt_every", "1", "--num_epoch", "2", *map(str, extra)]


def run_dir(save_dir):
    return os.path.join(save_dir, *RUN)


def content(save_dir):
    return checkpoint.load_content(os.path.join(run_dir(save_dir), training.CONTENT))


@pytest.fixture(scope="module")
def uninterrupted(images, tmp_path_factory):
    """Epochs 0, 1, 2 in one go."""
    save_dir = tmp_path_factory.mktemp("uninterrupted")
    train_ddgan.main(argv(images, save_dir))
    return save_dir


def assert_same(a, b, where="content"):
    """Equal nested structures, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), where


def assert_same_run(ours, theirs):
    mine, other = content(ours), content(theirs)
    for key in ("epoch", "iteration", "global_step", "netG_dict", "netD_dict", "optimizerG", "optimizerD",
                "schedulerG", "schedulerD", "ema", "rng"):
        assert_same(mine[key], other[key], key)
    assert mine["epoch"] == 3 and mine["global_step"] == 12
    for name in ("netG_2.pth", "sample_discrete_epoch_2.png"):
        paths = [os.path.join(run_dir(save_dir), name) for save_dir in (ours, theirs)]
        with open(paths[0], "rb") as mine_file, open(paths[1], "rb") as other_file:
            assert mine_file.read() == other_file.read(), name


def test_run_folder_holds_flags_samples_ema_generators_and_scalars(images, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_ddgan.main(argv(images, tmp_path, "--num_epoch", 1, "--tensorboard", "--log_every", 2,
                          "--save_ckpt_every", 5, "--save_content_every", 5))
    folder = run_dir(tmp_path)
    with open(os.path.join(folder, "args.json")) as handle:
        flags = json.load(handle)
    assert flags["seed"] == 7 and flags["ch_mult"] == [1, 2] and flags["use_ema"]
    names = set(os.listdir(folder))  # epoch 1: not a multiple of 5, but the last
    assert {"netG_0.pth", "netG_1.pth", "sample_discrete_epoch_0.png", "sample_discrete_epoch_1.png",
            "xpos_epoch_0.png", "content.pth"} <= names and "xpos_epoch_1.png" not in names
    generator, config = checkpoint.load_generator(os.path.join(folder, "netG_1.pth"), "cpu")
    saved = content(tmp_path)
    assert config == saved["model_config"]
    weights = dict(generator.named_parameters())
    assert all(torch.equal(weights[name], value) for name, value in saved["ema"]["shadow"].items())
    assert not torch.equal(weights["conv_in.weight"], saved["netG_dict"]["conv_in.weight"])
    events = EventAccumulator(os.path.join(folder, "tb"))
    events.Reload()
    assert {"loss/errD", "loss/errG", "loss/R1", "lr/G", "lr/D", "speed/images_per_s"} <= set(
        events.Tags()["scalars"])
    assert [event.step for event in events.Scalars("loss/errD")] == [2, 4, 6, 8]


def test_resume_after_an_epoch_is_bit_identical(images, uninterrupted, tmp_path):
    train_ddgan.main(argv(images, tmp_path, "--stop_after_epoch", 0))
    assert content(tmp_path)["epoch"] == 1
    train_ddgan.main(argv(images, tmp_path, "--resume"))
    assert_same_run(tmp_path, uninterrupted)


def test_sigterm_mid_epoch_saves_and_resumes_bit_identically(images, uninterrupted, tmp_path, monkeypatch,
                                                              capsys):
    step = training.Trainer.train_step

    def step_then_signal(self, real):
        out = step(self, real)
        if self.global_step == 6:  # epoch 1, second iteration
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(training.Trainer, "train_step", step_then_signal)
    with pytest.raises(SystemExit) as stopped:
        train_ddgan.main(argv(images, tmp_path))
    assert stopped.value.code == 128 + signal.SIGTERM
    assert "stopped by SIGTERM at epoch 1, iteration 2" in capsys.readouterr().err
    saved = content(tmp_path)
    assert (saved["epoch"], saved["iteration"], saved["global_step"]) == (1, 2, 6)
    monkeypatch.setattr(training.Trainer, "train_step", step)
    train_ddgan.main(argv(images, tmp_path, "--resume"))
    assert_same_run(tmp_path, uninterrupted)


def test_non_finite_loss_stops_and_keeps_the_last_good_content(images, tmp_path, monkeypatch, capsys):
    accumulate_g = DDGANLoss.accumulate_g
    calls = []

    def diverging(self, real):
        err, x_pos = accumulate_g(self, real)
        calls.append(1)
        return (err * float("nan") if len(calls) == 6 else err), x_pos

    monkeypatch.setattr(DDGANLoss, "accumulate_g", diverging)
    with pytest.raises(SystemExit) as stopped:
        train_ddgan.main(argv(images, tmp_path))
    assert stopped.value.code == 1
    message = capsys.readouterr().err
    assert "non-finite loss at epoch 1, iteration 1 (global step 5)" in message and "--lr_d" in message
    assert content(tmp_path)["epoch"] == 1
    assert not [name for name in os.listdir(run_dir(tmp_path)) if name.endswith(".tmp")]


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    state = rng_state(torch.device("cpu"))
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), torch.device("cpu"))
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(expected[0], again[0]) and (expected[1] == again[1]).all() and expected[2] == again[2]


def _wait_for(path, process, timeout=240):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def test_sigkill_leaves_a_content_that_resumes(images, tmp_path):
    folder = run_dir(tmp_path)
    process = start_cli(*argv(images, tmp_path, "--num_epoch", 1000), cwd=tmp_path)
    _wait_for(os.path.join(folder, "netG_2.pth"), process)
    process.kill()
    process.communicate()
    killed_at = content(tmp_path)["epoch"]
    assert killed_at >= 2
    resume = argv(images, tmp_path, "--num_epoch", 1000, "--resume", "--stop_after_epoch", killed_at)
    result = run_cli(*resume, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"resumed {folder} at epoch {killed_at}" in result.stdout
    assert content(tmp_path)["epoch"] == killed_at + 1
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_ctrl_c_with_loader_workers_saves_content_and_exits_130(images, tmp_path):
    """Ctrl-C reaches the whole process group, data-loader workers included (they quit; the
    training process needs no further batch to finish its iteration and save)."""
    process = start_cli(*argv(images, tmp_path, "--num_epoch", 1000, "--num_workers", 2), cwd=tmp_path)
    _wait_for(os.path.join(run_dir(tmp_path), "sample_discrete_epoch_0.png"), process)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "stopped by SIGINT" in err and "continue with --resume" in err
    assert content(tmp_path)["epoch"] >= 1
