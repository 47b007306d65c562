"""Metrics while training: metrics.jsonl, TensorBoard, netG_best.pth, the plot, and resuming."""

import json
import os
import signal

import pytest
import torch

import train_ddgan
from score_sde import checkpoint
from tests.conftest import run_command
from training import evaluation as train_metrics
from training.evaluation import BEST, METRICS_JSONL

RUN = ("dd_gan", "stacked_digits", "experiment_cifar_default")


def records(folder):
    with open(os.path.join(folder, METRICS_JSONL)) as handle:
        return [json.loads(line) for line in handle]


def metrics_run(tiny_train, save_dir):
    """Epochs 0..2 with the modes metric after every epoch (fully offline: stacked digits)."""
    return [*tiny_train, "--save_dir", str(save_dir), "--num_epoch", "2", "--metrics", "modes",
            "--metrics_every", "1", "--metrics_samples", "300", "--metrics_batch_size", "100",
            "--tensorboard", "--log_every", "1", "--save_content", "--save_content_every", "1",
            "--use_ema", "--ema_decay", "0.9", "--max_iters_per_epoch", "4"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_train):
    save_dir = tmp_path_factory.mktemp("metrics")
    train_ddgan.main(metrics_run(tiny_train, save_dir))
    return save_dir, os.path.join(save_dir, *RUN)


def test_every_evaluation_is_one_json_line(trained):
    _, folder = trained
    lines = records(folder)
    assert [record["epoch"] for record in lines] == [0, 1, 2]
    assert [record["step"] for record in lines] == [4, 8, 12]
    for record in lines:
        assert 0 <= record["modes"] <= 1000 and record["kl"] >= 0 and record["seconds"] > 0
        assert {"time", "checkpoint"} <= record.keys()
    assert [record["checkpoint"] for record in lines] == ["netG_0.pth", None, "netG_2.pth"]


def test_metrics_reach_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, folder = trained
    events = EventAccumulator(os.path.join(folder, "tb"))
    events.Reload()
    for name in ("kl", "modes"):
        scalars = events.Scalars(f"metrics/{name}")
        assert [event.step for event in scalars] == [4, 8, 12]
        assert [event.value for event in scalars] == pytest.approx([record[name] for record in records(folder)])


def test_the_best_generator_is_kept(trained):
    _, folder = trained
    lines = records(folder)
    best = min(lines, key=lambda record: record["kl"])
    payload = checkpoint.read(os.path.join(folder, BEST))
    assert (payload["epoch"], payload["metric"], payload["value"]) == (best["epoch"], "kl", best["kl"])
    generator, config = checkpoint.load_generator(os.path.join(folder, BEST), "cpu")
    assert config["image_size"] == 16


def same_weights(path, other):
    ours, theirs = checkpoint.read(path)["state_dict"], checkpoint.read(other)["state_dict"]
    return ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_metrics_leave_the_training_unchanged(trained, tiny_train, tmp_path):
    """Evaluating (and building the evaluator) draws from no RNG the training uses."""
    flags = metrics_run(tiny_train, tmp_path)
    del flags[flags.index("--metrics"):flags.index("--metrics_batch_size") + 2]
    train_ddgan.main(flags)
    assert same_weights(os.path.join(tmp_path, *RUN, "netG_2.pth"), os.path.join(trained[1], "netG_2.pth"))


def test_a_signal_abandons_the_evaluation_and_the_run_resumes_identically(trained, tiny_train, tmp_path,
                                                                            monkeypatch, capsys):
    """SIGTERM while epoch 1 is being evaluated: nothing more is sampled or scored, content.pth is
    saved at the start of epoch 2, and the resumed run first evaluates epoch 1, then ends with the
    uninterrupted run's weights and numbers."""
    from metrics import Evaluator

    sampled, scored = [], []

    def signalled(*args):
        sampled.append(args)
        if len(sampled) == 2:  # the evaluation of epoch 1
            os.kill(os.getpid(), signal.SIGTERM)
        return sample_array(*args)

    def scoring(self, samples):
        scored.append(len(samples))
        return score(self, samples)

    sample_array, score = train_metrics.sampling.sample_array, Evaluator.__call__
    monkeypatch.setattr(train_metrics.sampling, "sample_array", signalled)
    monkeypatch.setattr(Evaluator, "__call__", scoring)
    with pytest.raises(SystemExit) as stopped:
        train_ddgan.main(metrics_run(tiny_train, tmp_path))
    assert stopped.value.code == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "stopped by SIGTERM at epoch 2, iteration 0" in err, err
    assert "(the evaluation of epoch 1 is done then)" in err, err
    assert (len(sampled), scored) == (2, [300])  # epoch 1's samples were never scored
    folder = os.path.join(tmp_path, *RUN)
    assert [record["epoch"] for record in records(folder)] == [0]
    saved = checkpoint.read(os.path.join(folder, "content.pth"))
    assert (saved["epoch"], saved["iteration"]) == (2, 0)

    monkeypatch.setattr(train_metrics.sampling, "sample_array", sample_array)
    train_ddgan.main([*metrics_run(tiny_train, tmp_path), "--resume"])
    numbers = lambda recs: [{k: v for k, v in r.items() if k not in ("time", "seconds")} for r in recs]
    assert numbers(records(folder)) == numbers(records(trained[1]))
    assert same_weights(os.path.join(folder, "netG_2.pth"), os.path.join(trained[1], "netG_2.pth"))


def test_the_curves_are_drawn(trained, tmp_path):
    _, folder = trained
    result = run_command("-m utils.plot_metrics", folder, "--output", tmp_path / "curves.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_adds_exactly_the_new_epochs(trained, tiny_train):
    """A line of an epoch the resumed run trains again (an evaluation after the last content.pth) is
    dropped, so no epoch appears twice."""
    save_dir, folder = trained
    with open(os.path.join(folder, METRICS_JSONL), "a") as handle:
        handle.write(json.dumps({"epoch": 3, "step": 16, "kl": 0.0, "modes": 1000}) + "\n")
    train_ddgan.main([*tiny_train, "--save_dir", str(save_dir), "--resume", "--num_epoch", "3",
                      "--max_iters_per_epoch", "4"])
    lines = records(folder)
    assert [record["epoch"] for record in lines] == [0, 1, 2, 3]
    assert lines[-1]["step"] == 16 and lines[-1]["kl"] > 0
