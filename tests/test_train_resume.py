"""Nothing lost: a resumed run is the run that was never stopped; signals and kills leave
intact, resumable files; a non-finite loss stops without overwriting the last good state."""

import errno
import json
import math
import os
import random
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import train_ddgan
from score_sde import checkpoint
from tests._data_formats import random_images, write_image_folder, write_pngs
from tests.conftest import TINY_TRAIN, assert_same, finish, one_error_line, run_command, start_command
from training import content as training_content
from training import trainer as training
from training.loss import DDGANLoss
from utils.rng import rng_state, set_rng_state

RUN = ("dd_gan", "folder", "experiment_cifar_default")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """16 images of 20 x 20 px: resized, cropped and flipped at random (torch's RNG) to 16 px."""
    root = tmp_path_factory.mktemp("images")
    write_image_folder(str(root), random_images(16, 20, 20))
    return root


def argv(images, save_dir, *extra):
    return [*TINY_TRAIN, "--dataset", "folder", "--datadir", str(images), "--save_dir", str(save_dir), "--use_ema",
            "--ema_decay", "0.9", "--lazy_reg", "2", "--save_content", "--save_content_every", "1",
            "--save_ckpt_every", "1", "--num_epoch", "2", *map(str, extra)]


def run_dir(save_dir):
    return os.path.join(save_dir, *RUN)


def content(save_dir):
    return training_content.load(os.path.join(run_dir(save_dir), training.CONTENT))


@pytest.fixture(scope="module")
def uninterrupted(images, tmp_path_factory):
    """Epochs 0, 1, 2 in one go."""
    save_dir = tmp_path_factory.mktemp("uninterrupted")
    train_ddgan.main(argv(images, save_dir))
    return save_dir


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
    process = start_command("train_ddgan.py", *argv(images, tmp_path, "--num_epoch", 1000), cwd=tmp_path)
    _wait_for(os.path.join(folder, "netG_2.pth"), process)
    process.kill()
    process.communicate()
    killed_at = content(tmp_path)["epoch"]
    assert killed_at >= 2
    resume = argv(images, tmp_path, "--num_epoch", 1000, "--resume", "--stop_after_epoch", killed_at)
    result = run_command("train_ddgan.py", *resume, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"resumed {folder} at epoch {killed_at}" in result.stdout
    assert content(tmp_path)["epoch"] == killed_at + 1
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_ctrl_c_with_loader_workers_saves_content_and_exits_130(images, tmp_path):
    """Ctrl-C reaches the whole process group, data-loader workers included (they quit; the
    training process needs no further batch to finish its iteration and save)."""
    process = start_command("train_ddgan.py", *argv(images, tmp_path, "--num_epoch", 1000, "--num_workers", 2),
                            cwd=tmp_path)
    _wait_for(os.path.join(run_dir(tmp_path), "sample_discrete_epoch_0.png"), process)
    os.killpg(process.pid, signal.SIGINT)
    err = finish(process, timeout=120).stderr
    assert process.returncode == 130, err
    assert "stopped by SIGINT" in err and "continue with --resume" in err
    assert content(tmp_path)["epoch"] >= 1


def test_training_grid_is_test_ddgans_grid_of_the_saved_weights(images, tmp_path):
    """One sampling path: the epoch's grid is what test_ddgan.py draws from netG_{epoch}.pth (EMA
    weights) with the run's --seed and --batch_size."""
    train_ddgan.main(argv(images, tmp_path, "--num_epoch", 1))
    result = run_command("test_ddgan.py", "--dataset", "folder", "--save_dir", tmp_path, "--epoch_id", 1,
                         "--seed", 7, "--batch_size", 4, "--output_dir", tmp_path / "grid", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    ours = (tmp_path / "grid" / "samples_folder.png").read_bytes()
    assert ours == Path(run_dir(tmp_path), "sample_discrete_epoch_1.png").read_bytes()


def test_resume_takes_the_runs_own_flags(images, tmp_path):
    """A run trained with --use_ema --ema_decay 0.9 --lazy_reg 2, resumed with none of them, keeps them."""
    train_ddgan.main(argv(images, tmp_path, "--stop_after_epoch", 0))
    bare = [*TINY_TRAIN, "--dataset", "folder", "--datadir", str(images), "--save_dir", str(tmp_path), "--resume",
            "--stop_after_epoch", "1"]
    train_ddgan.main(bare)
    saved = content(tmp_path)
    assert saved["ema"] is not None and saved["args"]["use_ema"] and saved["args"]["ema_decay"] == 0.9
    assert saved["args"]["lazy_reg"] == 2 and saved["args"]["save_content"] and saved["args"]["num_epoch"] == 2
    generator, _ = checkpoint.load_generator(os.path.join(run_dir(tmp_path), "netG_1.pth"), "cpu")
    shadow = saved["ema"]["shadow"]
    assert all(torch.equal(value, shadow[name]) for name, value in generator.named_parameters())


def test_resume_with_more_epochs_continues_the_decay_without_rising(images, tmp_path, monkeypatch):
    train_ddgan.main(argv(images, tmp_path, "--stop_after_epoch", 0))
    seen = []
    end_epoch = training.Trainer.end_epoch

    def recording(self, epoch):
        seen.append(self.optG.param_groups[0]["lr"])
        return end_epoch(self, epoch)

    monkeypatch.setattr(training.Trainer, "end_epoch", recording)
    train_ddgan.main(argv(images, tmp_path, "--resume", "--num_epoch", 6))
    first = training.LR_MIN + (1.5e-4 - training.LR_MIN) * (1 + math.cos(math.pi / 2)) / 2  # epoch 1 of 2
    assert len(seen) == 6 and seen[0] == pytest.approx(first)
    assert all(later <= earlier for earlier, later in zip(seen, seen[1:], strict=False)), seen
    assert seen[-1] == pytest.approx(training.LR_MIN, rel=1e-6)
    assert content(tmp_path)["optimizerG"]["param_groups"][0]["lr"] == pytest.approx(training.LR_MIN)


def _finished_files(root):
    """Names of the files under ``root``, less the ``*.tmp`` a running save may be writing or renaming."""
    return {str(path.relative_to(root)) for path in Path(root).rglob("*") if not path.name.endswith(".tmp")}


def test_a_second_training_into_the_same_folder_is_refused(images, tmp_path):
    process = start_command("train_ddgan.py", *argv(images, tmp_path, "--num_epoch", 1000), cwd=tmp_path)
    try:
        _wait_for(os.path.join(run_dir(tmp_path), "netG_0.pth"), process)
        # The first training goes on writing, so only names can be compared, never contents.
        before = _finished_files(tmp_path)
        second = run_command("train_ddgan.py", *argv(images, tmp_path, "--num_epoch", 1000, "--resume"),
                             cwd=tmp_path)
        line = one_error_line(second, 1)
        assert "is in use by another training (pid" in line and f"pid {process.pid} " in line, line
        assert process.poll() is None, "the refused second training stopped the first"
    finally:
        process.kill()
        process.communicate()
    assert before <= _finished_files(tmp_path)


def test_a_full_disk_stops_with_one_line_and_keeps_the_last_content(images, tmp_path, monkeypatch, capsys):
    train_ddgan.main(argv(images, tmp_path, "--stop_after_epoch", 0))
    kept = Path(run_dir(tmp_path), training.CONTENT).read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(SystemExit) as stopped:
        train_ddgan.main(argv(images, tmp_path, "--resume"))
    assert stopped.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "error: disk full while writing" in err[-1] and "--resume" in err[-1], err
    assert Path(run_dir(tmp_path), training.CONTENT).read_bytes() == kept
    assert not [name for name in os.listdir(run_dir(tmp_path)) if name.endswith(".tmp")]


def test_a_corrupt_image_met_mid_epoch_is_named(tmp_path):
    folder = write_pngs(tmp_path / "images", random_images(16, 20, 20))
    (folder / "15.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # the up-front check reads only the first
    result = run_command("train_ddgan.py", *TINY_TRAIN, "--dataset", "folder", "--datadir", folder,
                         "--save_dir", tmp_path / "runs", "--num_epoch", 1, cwd=tmp_path)
    line = one_error_line(result, 1)
    assert "15.png" in line and "prepare_lmdb" in line, line


def test_a_master_port_in_use_is_named(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_command("train_ddgan.py", *TINY_TRAIN, "--num_process_per_node", 2, "--master_port", port,
                             "--save_dir", tmp_path, cwd=tmp_path)
    line = one_error_line(result, 1)
    assert f"--master_port {port}" in line and "another --master_port" in line, line
    assert not os.path.exists(tmp_path / "dd_gan")
