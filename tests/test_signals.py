"""Preemption never loses a run: a stop signal sent to the whole process group, as schedulers send it
(data-loader workers included), at any moment of a training, saves content.pth, prints one line,
exits 128 + the signal number, and --resume continues bit-identically.

The moments (tests/_signal_hook.py): during an iteration, during an evaluation (--metrics), and during
the write of content.pth; with 0, 2 and 4 loader workers; SIGTERM, SIGINT and SIGHUP.  Also: every
rank of a multi-process run, test_ddgan.py while it samples, and data items that do not depend on
which worker reads them.
"""

import json
import os
import signal

import pytest
import torch

from tests.conftest import REPO, TINY_TRAIN, assert_same, finish, run_command, start_command, visible_lines
from training import content, run_folder
from training.data import SeededItems
from utils import distributed, outputs

RUN = ("dd_gan", "stacked_digits", "experiment_cifar_default")
SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")
MOMENTS = {  # where each moment's stop leaves the run
    "iteration": "at epoch 1, iteration 2",
    "evaluation": "at epoch 2, iteration 0",
    "write": "at epoch 2, iteration 0",
}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """The digits classifier of the modes metric, trained once for this module."""
    from metrics.classifiers import digits_classifier

    path = tmp_path_factory.mktemp("classifier") / "digits.pt"
    digits_classifier(str(path), verbose=False)
    return path


def argv(save_dir, classifier, *extra):
    """Epochs 0..2 of 4 iterations, content.pth and the modes metric after every epoch."""
    return [*TINY_TRAIN, "--save_dir", save_dir, "--num_epoch", 2, "--max_iters_per_epoch", 4, "--use_ema",
            "--ema_decay", 0.9, "--lazy_reg", 2, "--save_content", "--save_content_every", 1, "--metrics", "modes",
            "--metrics_every", 1, "--metrics_samples", 300, "--metrics_batch_size", 100, "--mode_classifier",
            classifier, *extra]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, classifier):
    save_dir = tmp_path_factory.mktemp("uninterrupted")
    result = run_command("train_ddgan.py", *argv(save_dir, classifier), cwd=save_dir)
    assert result.returncode == 0, result.stderr
    return save_dir


def metric_numbers(save_dir):
    """metrics.jsonl without its clock fields."""
    with open(os.path.join(save_dir, *RUN, "metrics.jsonl")) as handle:
        records = [json.loads(line) for line in handle]
    return [{key: value for key, value in record.items() if key not in ("time", "seconds")} for record in records]


def assert_same_run(ours, theirs):
    """The same weights, optimisers, RNG states, files and metrics as the run that was never stopped."""
    mine, other = (content.load(os.path.join(d, *RUN, run_folder.CONTENT)) for d in (ours, theirs))
    for key in ("epoch", "iteration", "global_step", "netG_dict", "netD_dict", "optimizerG", "optimizerD",
                "schedulerG", "schedulerD", "ema", "rng"):
        assert_same(mine[key], other[key], key)
    for name in ("netG_0.pth", "netG_2.pth", "sample_discrete_epoch_1.png", "sample_discrete_epoch_2.png"):
        paths = [os.path.join(d, *RUN, name) for d in (ours, theirs)]
        with open(paths[0], "rb") as a, open(paths[1], "rb") as b:
            assert a.read() == b.read(), name
    assert metric_numbers(ours) == metric_numbers(theirs)


def the_stop_line(result, name):
    """The one line a stopped command printed (besides notes and progress bars); no traceback."""
    assert result.returncode == 128 + getattr(signal, name), (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and "Error" not in result.stderr.replace("error:", ""), result.stderr
    lines = [line for line in visible_lines(result.stderr) if not line.startswith("note:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("workers", [0, 2, 4])
@pytest.mark.parametrize("name", SIGNALS)
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_stop_signal_to_the_process_group_loses_nothing(uninterrupted, classifier, tmp_path, moment, name,
                                                          workers):
    flags = argv(tmp_path, classifier, "--num_workers", workers)
    process = start_command("tests/_signal_hook.py", moment, name, "train_ddgan.py", *flags, cwd=tmp_path)
    line = the_stop_line(finish(process), name)
    assert line.startswith(f"stopped by {name} {MOMENTS[moment]}: saved "), line
    assert line.endswith("continue with --resume" if moment == "iteration" else
                         "continue with --resume (the evaluation of epoch 1 is done then)"), line
    resumed = run_command("train_ddgan.py", *flags, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path, uninterrupted)
    assert not [name for name in os.listdir(os.path.join(tmp_path, *RUN)) if name.endswith(".tmp")]


@pytest.mark.parametrize("name", SIGNALS)
def test_every_rank_of_a_two_process_run_stops_and_resumes(classifier, tmp_path, name):
    """--num_process_per_node 2 (gloo): the signal reaches the launcher and both ranks."""
    flags = argv(tmp_path, classifier, "--num_process_per_node", 2, "--master_port", 0, "--batch_size", 2)
    process = start_command("tests/_signal_hook.py", "iteration", name, "train_ddgan.py", *flags, cwd=tmp_path)
    line = the_stop_line(finish(process), name)
    assert line.startswith(f"stopped by {name} at epoch 1, iteration 2: saved "), line
    assert content.load(os.path.join(tmp_path, *RUN, run_folder.CONTENT))["world_size"] == 2
    resumed = run_command("train_ddgan.py", *flags, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    interrupted_once = content.load(os.path.join(tmp_path, *RUN, run_folder.CONTENT))
    assert (interrupted_once["epoch"], interrupted_once["global_step"]) == (3, 12)


def test_torchrun_ranks_stop_and_resume(tmp_path, classifier):
    """SIGTERM to both ranks of a torchrun launch (gloo): each saves its part and says it once; torchrun
    itself then reports the ranks' exit (its own output, outside this project)."""
    port = distributed.free_port("127.0.0.1")
    flags = argv(tmp_path, classifier, "--batch_size", 2)
    launch = ["--nproc_per_node", 2, "--master_port", port, REPO / "tests" / "_signal_hook.py", "iteration",
              "SIGTERM", "train_ddgan.py"]
    result = run_command("-m torch.distributed.run", *launch, *flags, cwd=tmp_path, timeout=300)
    assert result.returncode != 0
    ours = [line for line in visible_lines(result.stderr) if "stopped by" in line]
    assert len(ours) == 1 and ours[0].startswith("stopped by SIGTERM at epoch 1, iteration 2: saved"), result.stderr
    resumed = run_command("-m torch.distributed.run", "--nproc_per_node", 2, "--master_port", port,
                          REPO / "train_ddgan.py", *flags, "--resume", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    saved = content.load(os.path.join(tmp_path, *RUN, run_folder.CONTENT))
    assert (saved["epoch"], saved["global_step"], saved["world_size"]) == (3, 12, 2)


@pytest.mark.parametrize("name", SIGNALS)
def test_test_ddgan_stopped_while_sampling_leaves_an_honest_folder(tmp_path, name):
    from tests._eval_helpers import save_own
    from tests.conftest import tiny_config

    ckpt = save_own(tmp_path / "netG.pth", tiny_config())
    samples = tmp_path / "samples"
    process = start_command("tests/_signal_hook.py", "sampling", name, "test_ddgan.py", "--checkpoint", ckpt,
                            "--num_samples", 40, "--batch_size", 8, "--sample_dir", samples, "--device", "cpu",
                            cwd=tmp_path)
    line = the_stop_line(finish(process), name)
    assert line.startswith(f"test_ddgan.py: stopped by {name}: nothing more is written"), line
    assert outputs.read_manifest(str(samples))["complete"] is False
    assert not (samples / outputs.NPZ_NAME).exists()
    assert not [path for path in samples.iterdir() if path.name.endswith(outputs.PARTIAL_SUFFIX)]


@pytest.mark.parametrize("workers", [0, 2])
def test_data_items_do_not_depend_on_the_worker_that_reads_them(workers):
    """Random flips are drawn per (seed, epoch, index): any number of loader workers gives the same
    batches, which is what lets a run resumed mid-epoch with workers continue bit-identically."""
    flips = torch.utils.data.TensorDataset(torch.arange(32.0))

    class Flipping(torch.utils.data.Dataset):
        def __len__(self):
            return len(flips)

        def __getitem__(self, index):
            return flips[index][0] * (1 if torch.rand(()) < 0.5 else -1)

    items = SeededItems(Flipping(), seed=7)
    loader = lambda n: torch.utils.data.DataLoader(items, batch_size=4, num_workers=n)
    items.epoch = 3
    assert torch.equal(torch.cat(list(loader(workers))), torch.cat(list(loader(0))))
    assert torch.equal(torch.stack([items[i] for i in range(32)]), torch.cat(list(loader(0))))
    epoch_3 = torch.cat(list(loader(workers)))
    items.epoch = 4
    assert not torch.equal(torch.cat(list(loader(workers))), epoch_3)  # another epoch, other flips


RESOURCE_TRACKER_PROBE = """
import os, signal, sys, time
from multiprocessing import resource_tracker
from utils import signals
if sys.argv[1] == "shielded":
    signals.start_resource_tracker()
else:
    resource_tracker.ensure_running()
tracker = resource_tracker._resource_tracker._pid
signal.signal(signal.SIGHUP, lambda *_: None)
os.killpg(os.getpgrp(), signal.SIGHUP)
time.sleep(0.5)
print("alive" if os.waitpid(tracker, os.WNOHANG) == (0, 0) else "killed")
"""


@pytest.mark.parametrize("how", ["shielded", "plain"])
def test_the_resource_tracker_outlives_a_sighup_to_the_group(how):
    """multiprocessing's resource tracker ignores SIGINT and SIGTERM but not SIGHUP; started by
    signals.start_resource_tracker (as the launcher does before spawning ranks) it outlives a SIGHUP
    to the group, where a plain start dies (its owner would then warn, and its successor print tracebacks)."""
    probe = start_command("-c", RESOURCE_TRACKER_PROBE, how, cwd=REPO)
    result = finish(probe, timeout=60)
    assert result.stdout.strip() == ("alive" if how == "shielded" else "killed"), result.stderr
