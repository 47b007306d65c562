"""Every command line on bad input: a non-zero exit, one line on stderr that says what to do,
no traceback, and every file that was there before unchanged (md5), with nothing new written
unless the case allows it.

Each row is a ``Case``: the command, a function that lays out files in a scratch folder and
returns the arguments, and a fragment the error line must contain.  New flags, commands and
file kinds join the tables below; one table per command, so that rows are easy to find.
"""

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests import _data_formats as formats
from tests._eval_helpers import save_own
from tests.conftest import TINY_TRAIN, cli_env, file_digests, one_error_line, run_command, tiny_config

ONE_STEP = [*TINY_TRAIN, "--num_epoch", "1", "--max_iters_per_epoch", "1"]  # the tiny run, one iteration


@dataclass
class Case:
    id: str
    command: str  # a script relative to the repository, or "-m module"
    arguments: Callable  # (scratch folder: Path) -> list of arguments; may write files there first
    expect: str  # a fragment of the error line
    code: int | None = None  # the exit status, when it matters (argparse: 2)
    writes: bool = False  # the command may create new files (it must still change none)
    env: dict = field(default_factory=dict)  # more environment variables; "{scratch}" in a value: the scratch folder


def noise_pngs(folder, count=4):
    """``count`` 16 px noise images as 0.png, 1.png, ... in ``folder``; returns it."""
    return formats.write_pngs(folder, formats.random_images(count, 16))


def train(*extra, setup=None):
    """Arguments of a tiny training run saving under ``scratch/runs``, plus ``extra``; ``setup(scratch)``
    lays out files first and may return more arguments."""

    def arguments(scratch):
        more = setup(scratch) if setup is not None else None
        return [*ONE_STEP, "--save_dir", scratch / "runs", *map(str, extra), *map(str, more or [])]

    return arguments


TEMPLATES = {}  # name -> folder made once by the ``templates`` fixture, copied into a case's scratch


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """Finished tiny runs (with and without EMA, content.pth; with the modes metric) that cases copy."""
    import train_ddgan

    root = tmp_path_factory.mktemp("templates")
    train_ddgan.main([*ONE_STEP, "--save_dir", str(root / "runs"), "--use_ema", "--ema_decay", "0.9",
                      "--save_content", "--max_iters_per_epoch", "0"])
    train_ddgan.main([*ONE_STEP, "--save_dir", str(root / "plain"), "--save_content", "--max_iters_per_epoch", "0"])
    train_ddgan.main([*ONE_STEP, "--save_dir", str(root / "metrics"), "--save_content", "--max_iters_per_epoch", "0",
                      "--metrics", "modes", "--metrics_samples", "20"])
    TEMPLATES.update(run=root / "runs", plain=root / "plain", metrics=root / "metrics")
    return TEMPLATES


def trained_run(scratch, template="run"):
    """Copy a trained tiny run ("run": with EMA; "plain": without; "metrics": with metrics.jsonl and
    netG_best.pth) to ``scratch/runs`` (``train``'s --save_dir)."""
    shutil.copytree(TEMPLATES[template], scratch / "runs")


RUN = "runs/dd_gan/stacked_digits/experiment_cifar_default"  # the run folder of ``train`` in the scratch folder
RECORD = {"epoch": 0, "step": 0, "time": "2026-12-06T10:00:00+0000", "seconds": 0.5, "modes": 3, "kl": 5.9,
          "checkpoint": "netG_0.pth"}  # a line of metrics.jsonl


def records_text(*records):
    """metrics.jsonl holding ``records``: dicts (written as JSON) or lines of text as they are."""
    return "".join((json.dumps(record) if isinstance(record, dict) else record) + "\n" for record in records)


def metrics_run(*records):
    """A trained run with the modes metric whose metrics.jsonl holds ``records`` (see ``records_text``)."""
    def setup(scratch):
        trained_run(scratch, "metrics")
        (scratch / RUN / "metrics.jsonl").write_text(records_text(*records))
    return setup


def in_place_of(name):
    """A trained run with the modes metric whose ``name`` is a folder."""
    def setup(scratch):
        trained_run(scratch, "metrics")
        os.remove(scratch / RUN / name)
        (scratch / RUN / name).mkdir()
    return setup


def write_file(name, data=b""):
    def setup(scratch):
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_bytes(data)
    return setup


# ----------------------------------------------------------------------------- train_ddgan.py
def images(name="images", count=8):
    """A folder of PNGs in the scratch folder, as --dataset folder --datadir."""
    def setup(scratch):
        noise_pngs(scratch / name, count)
        return ["--dataset", "folder", "--datadir", scratch / name]
    return setup


def images_and(*extra, name="images"):
    """images(), plus arguments that may name paths under the scratch folder ({scratch})."""
    def setup(scratch):
        return [*images(name)(scratch), *(str(item).format(scratch=scratch) for item in extra)]
    return setup


def trained_run_and(*extra):
    def setup(scratch):
        trained_run(scratch)
        return [str(item).format(scratch=scratch) for item in extra]
    return setup


TRAIN_CASES = [
    Case("train-unknown-dataset", "train_ddgan.py", train("--dataset", "imagenet"), "invalid choice", 2),
    Case("train-negative-lr", "train_ddgan.py", train("--lr_d", "-1e-4"), "--lr_d: -1e-4 is out of range", 2),
    Case("train-nan-lr", "train_ddgan.py", train("--lr_g", "nan"), "--lr_g: nan is not a finite number", 2),
    Case("train-inf-lr", "train_ddgan.py", train("--lr_g", "inf"), "--lr_g: inf is not a finite number", 2),
    Case("train-nan-ema", "train_ddgan.py", train("--ema_decay", "nan"), "--ema_decay: nan is not a finite", 2),
    Case("train-ema-one", "train_ddgan.py", train("--ema_decay", "1.0"), "--ema_decay: 1.0 is out of range", 2),
    Case("train-nan-beta1", "train_ddgan.py", train("--beta1", "nan"), "--beta1: nan is not a finite", 2),
    Case("train-beta2-one", "train_ddgan.py", train("--beta2", "1.0"), "must be >= 0.0 and < 1.0", 2),
    Case("train-nan-r1", "train_ddgan.py", train("--r1_gamma", "nan"), "--r1_gamma: nan is not a finite", 2),
    Case("train-negative-r1", "train_ddgan.py", train("--r1_gamma", "-1"), "--r1_gamma: -1 is out of range", 2),
    Case("train-nan-beta-max", "train_ddgan.py", train("--beta_max", "nan"), "--beta_max: nan is not a finite", 2),
    Case("train-nan-dropout", "train_ddgan.py", train("--dropout", "nan"), "--dropout: nan is not a finite", 2),
    Case("train-geometric-schedule", "train_ddgan.py", train("--use_geometric"), "gives betas outside (0, 1)", 2),
    Case("train-dropout-one", "train_ddgan.py", train("--dropout", "1"), "--dropout: 1 is out of range", 2),
    Case("train-negative-seed", "train_ddgan.py", train("--seed", "-5"), "--seed: -5 is out of range", 2),
    Case("train-exp-path", "train_ddgan.py", train("--exp", "../../elsewhere"), "is not a folder name", 2),
    Case("train-text-epochs", "train_ddgan.py", train("--num_epoch", "ten"), "expected an integer, got 'ten'", 2),
    Case("train-lazy-reg-zero", "train_ddgan.py", train("--lazy_reg", "0"), "--lazy_reg: 0 is out of range", 2),
    Case("train-batch-6", "train_ddgan.py", train("--batch_size", "6"), "must be below 4 or a multiple of 4", 2),
    Case("train-port-range", "train_ddgan.py", train("--master_port", "70000"), "is not a TCP port", 2),
    Case("train-port-0-nodes", "train_ddgan.py", train("--master_port", "0", "--num_proc_node", "2"),
         "needs a single node", 2),
    Case("train-bad-device", "train_ddgan.py", train("--device", "tpu"), "unknown device 'tpu'", 2),
    Case("train-ch-mult-size", "train_ddgan.py", train("--image_size", "20", "--ch_mult", "1", "2", "2", "2"),
         "not divisible by 2**3", 2),
    Case("train-image-too-small", "train_ddgan.py", train("--image_size", "4", "--ch_mult", "1", "2"),
         "--image_size 4 is too small for the discriminator", 1),
    Case("train-unknown-metric", "train_ddgan.py", train("--metrics", "fid,bogus"), "bogus", 2),
    Case("train-metrics-too-few", "train_ddgan.py", train("--metrics", "is", "--metrics_samples", "5"),
         "is needs at least 10 --metrics_samples", 1),
    Case("train-missing-real", "train_ddgan.py", train("--metrics", "fid", "--real_img_dir", "no_such_dir"),
         "--real_img_dir no_such_dir does not exist", 1),
    Case("train-missing-datadir", "train_ddgan.py", train("--dataset", "folder", "--datadir", "missing"),
         "missing", 1),
    Case("train-channels", "train_ddgan.py", train("--num_channels", "1", setup=images()), "fix --num_channels", 1),
    Case("train-too-few-images", "train_ddgan.py", train(setup=images(count=2)), "fewer than one --batch_size 4",
         1),
    Case("train-save-dir-is-file", "train_ddgan.py", train(setup=lambda s: write_file("taken")(s) or
                                                             ["--save_dir", s / "taken"]),
         "lies below the file", 1),
    Case("train-save-dir-under-file", "train_ddgan.py", train(setup=lambda s: write_file("taken")(s) or
                                                                ["--save_dir", s / "taken" / "runs"]),
         "lies below the file", 1),
    Case("train-save-dir-unwritable", "train_ddgan.py",
         train(setup=lambda s: ["--save_dir", f"{formats.unwritable_folder(s)}/runs"]),
         "is not writable (permission denied): choose a folder you can write to", 1),
    Case("train-save-dir-in-data", "train_ddgan.py", train(setup=images_and("--save_dir", "{scratch}/images/runs")),
         "inside --datadir", 1),
    Case("train-existing-run", "train_ddgan.py", train(setup=trained_run), "already holds a run: pass --resume", 1),
    Case("train-resume-nothing", "train_ddgan.py", train("--resume"), "no training content at", 1),
    Case("train-resume-corrupt", "train_ddgan.py",
         train("--resume", setup=write_file("runs/dd_gan/stacked_digits/experiment_cifar_default/content.pth",
                                            b"not a checkpoint")), "the file is damaged", 1),
    Case("train-resume-content-is-dir", "train_ddgan.py",
         train("--resume", setup=lambda s: (s / "runs/dd_gan/stacked_digits/experiment_cifar_default/content.pth")
               .mkdir(parents=True)), "is a folder, not a content.pth", 1),
    Case("train-resume-model-conflict", "train_ddgan.py",
         train("--resume", "--num_channels_dae", "16", setup=trained_run),
         "the run was trained with --num_channels_dae 8 (given 16)", 1),
    Case("train-resume-no-ema-conflict", "train_ddgan.py", train("--resume", "--no-use_ema", setup=trained_run),
         "--use_ema True (given False)", 1),
    Case("train-resume-ema-decay-conflict", "train_ddgan.py",
         train("--resume", "--ema_decay", "0.5", setup=trained_run), "--ema_decay 0.9 (given 0.5)", 1),
    Case("train-resume-ema-conflict", "train_ddgan.py",
         train("--resume", "--use_ema", setup=lambda s: trained_run(s, "plain")), "--use_ema False (given True)", 1),
    *([] if torch.cuda.is_available() else [
        Case("train-no-cuda", "train_ddgan.py", train("--device", "cuda"), "CUDA is not available here", 2)]),
    Case("train-resume-epochs-below", "train_ddgan.py",
         train("--resume", setup=trained_run_and("--num_epoch", "1", "--max_iters_per_epoch", "0")),
         "already finished epoch 1", 1),
    # the run's records read back on --resume: refused before anything is written or trained
    Case("train-resume-metrics-text-value", "train_ddgan.py",
         train("--resume", "--num_epoch", "2", setup=metrics_run({**RECORD, "kl": "6.91"})),
         'metrics.jsonl line 1: "kl" is "6.91", not a number: correct or delete the line', 1),
    Case("train-resume-metrics-bool-value", "train_ddgan.py",
         train("--resume", "--num_epoch", "2", setup=metrics_run(RECORD, {**RECORD, "epoch": 1, "modes": True})),
         'metrics.jsonl line 2: "modes" is true, not a number', 1),
    Case("train-resume-metrics-no-epoch", "train_ddgan.py",
         train("--resume", "--num_epoch", "2", setup=metrics_run({key: value for key, value in RECORD.items()
                                                                  if key != "epoch"})),
         'metrics.jsonl line 1 has no "epoch" (a whole number >= 0)', 1),
    Case("train-resume-metrics-text-epoch", "train_ddgan.py",
         train("--resume", "--num_epoch", "2", setup=metrics_run({**RECORD, "epoch": "0"})),
         'metrics.jsonl line 1 has no "epoch"', 1),
    Case("train-resume-metrics-not-json", "train_ddgan.py",
         train("--resume", "--num_epoch", "2", setup=metrics_run(RECORD, "", "{oops", {**RECORD, "epoch": 1})),
         "metrics.jsonl line 3 is not JSON: correct or delete the line", 1),
    Case("train-resume-metrics-not-an-object", "train_ddgan.py",
         train("--resume", "--num_epoch", "2", setup=metrics_run("[1, 2]", RECORD)),
         "metrics.jsonl line 1 is not a JSON object", 1),
    Case("train-resume-metrics-text-field", "train_ddgan.py",
         train("--resume", "--num_epoch", "2", setup=metrics_run({**RECORD, "checkpoint": 7})),
         'metrics.jsonl line 1: "checkpoint" is 7, not text', 1),
    Case("train-resume-metrics-is-a-folder", "train_ddgan.py",
         train("--resume", "--num_epoch", "2", setup=in_place_of("metrics.jsonl")),
         "metrics.jsonl is a folder where the run writes a file: remove or rename it", 1),
    Case("train-resume-best-is-a-folder", "train_ddgan.py",
         train("--resume", "--num_epoch", "2", setup=in_place_of("netG_best.pth")),
         "netG_best.pth is a folder where the run writes a file", 1),
    Case("train-no-inception-weights", "train_ddgan.py", train("--metrics", "fid"),
         "pass --inception_weights PATH, set DDGAN_INCEPTION_WEIGHTS=PATH", 1, writes=True),
    Case("train-corrupt-classifier-cache", "train_ddgan.py",
         train("--metrics", "modes", setup=write_file("cache/ddgan/digits_classifier_v1.pt", b"garbage")),
         "digits_classifier_v1.pt (RuntimeError, BadZipFile): the cache file is damaged: delete it", 1, writes=True,
         env={"XDG_CACHE_HOME": "{scratch}/cache"}),
]

# ----------------------------------------------------------------------------- test_ddgan.py
def on(*setups):
    """One setup running ``setups`` (each scratch -> anything) in order."""
    def setup(scratch):
        for step in setups:
            step(scratch)
    return setup


def pngs(name, count=4):
    return lambda s: noise_pngs(s / name, count)


def arrays(name, array=None, **named):
    """``array`` as name.npy (np.save), or ``named`` arrays as name.npz (np.savez)."""
    return lambda s: np.save(s / name, array) if array is not None else np.savez(s / name, **named)


def made(name, kind="folder"):
    return lambda s: (s / name).mkdir(parents=True) if kind == "folder" else os.mkfifo(s / name)


def sample_run(name, count=4, complete=True):
    """A folder as test_ddgan.py leaves it: count PNGs, samples.npz, manifest.json."""
    def setup(scratch):
        from utils import outputs

        noise_pngs(scratch / name, count)
        np.savez(scratch / name / "samples.npz", samples=np.zeros((count, 16, 16, 3), np.uint8))
        outputs.write_manifest(scratch / name, complete=complete, count=count)
    return setup


HELD = []  # locks a case's setup holds (in this process) while its command runs


def held_by_another_run(folder_or_lock, kind="sample"):
    """Hold the lock that a sampling run takes on the folder (``kind`` "sample") or prepare_lmdb on an
    --output (``kind`` "prepare": the path of OUTPUT), as a second run of the same command would meet it."""
    def setup(scratch):
        from datasets_prep import prepare_lmdb
        from utils import outputs
        from utils.locks import FolderLock

        path = scratch / folder_or_lock
        lock = outputs.sample_folder_lock(path) if kind == "sample" else FolderLock(
            f"{path}{prepare_lmdb.LOCK_SUFFIX}", str).acquire()
        HELD.append(lock)
    return setup


def in_scratch(*arguments, setup=None):
    """``arguments`` as they are (paths relative to the scratch folder, the command's cwd), after ``setup``."""
    def make(scratch):
        if setup is not None:
            setup(scratch)
        return list(arguments)
    return make


def sample(*arguments, setup=None):
    """test_ddgan.py on a tiny checkpoint (netG_7.pth in the scratch folder), CPU, plus ``arguments``."""
    def make(scratch):
        save_own(scratch / "netG_7.pth", tiny_config())
        return ["--checkpoint", "netG_7.pth", "--device", "cpu", "--num_workers", "0",
                *in_scratch(*arguments, setup=setup)(scratch)]
    return make


NAN_STATS = {"mu": np.full(2048, np.nan), "sigma": np.eye(2048)}
OVERSHOT = np.linspace(0, 1.5, 2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3)  # [0, 1]? or dark [0, 255]?
FLOAT_NAN = np.where(np.eye(16, dtype=bool)[None, :, :, None], np.nan, 100.0).repeat(4, 0).repeat(3, 3)
SAMPLE_CASES = [
    # where the samples would go: never into, or over, an input; nothing written before refusing
    Case("sample-dir-is-real-dir", "test_ddgan.py",
         sample("--compute_fid", "--real_img_dir", "real", "--sample_dir", "real", "--num_samples", "2",
                setup=pngs("real")), "--sample_dir real is the --real_img_dir folder", 1),
    Case("sample-dir-would-replace-real-npz", "test_ddgan.py",
         sample("--compute_pr", "--real_img_dir", "out/samples.npz", "--sample_dir", "out", "--num_samples", "4",
                setup=sample_run("out")), "--sample_dir out would replace --real_img_dir out/samples.npz", 1),
    Case("sample-dir-holds-own-images", "test_ddgan.py",
         sample("--sample_dir", "mine", "--num_samples", "2", setup=pngs("mine", 1)),
         "holds files but no manifest.json", 1),
    Case("sample-dir-is-a-file", "test_ddgan.py",
         sample("--sample_dir", "notes", "--num_samples", "2", setup=write_file("notes")),
         "--sample_dir notes is a file, not a folder", 1),
    Case("sample-dir-below-a-file", "test_ddgan.py",
         sample("--sample_dir", "notes/samples", "--num_samples", "2", setup=write_file("notes")),
         "lies below the file", 1),
    Case("sample-dir-unwritable", "test_ddgan.py",
         lambda s: sample("--sample_dir", f"{formats.unwritable_folder(s)}/samples", "--num_samples", "2")(s),
         "is not writable (permission denied): choose a folder you can write to", 1),
    Case("sample-dir-in-use", "test_ddgan.py",
         sample("--sample_dir", "out", "--num_samples", "2", setup=on(sample_run("out"), held_by_another_run("out"))),
         "--sample_dir out is in use by another sampling run (pid", 1),
    Case("sample-dir-png-is-a-folder", "test_ddgan.py",
         sample("--sample_dir", "out", "--num_samples", "2", setup=on(sample_run("out"), made("out/7.png"))),
         "out/7.png is a folder where a sample file goes", 1),
    Case("grid-output-dir-is-a-file", "test_ddgan.py", sample("--output_dir", "notes", setup=write_file("notes")),
         "--output_dir notes is a file, not a folder", 1),
    Case("grid-over-the-checkpoint", "test_ddgan.py",
         lambda s: [*sample()(s), "--checkpoint", shutil.copy(s / "netG_7.pth", s / "samples_cifar10.png")],
         "is the --checkpoint file: it would be overwritten", 1),
    # the real side: checked before any sampling
    Case("sample-real-nan-stats", "test_ddgan.py",
         sample("--compute_fid", "--real_img_dir", "s.npz", "--num_samples", "2", setup=arrays("s.npz", **NAN_STATS)),
         "mu or sigma holds NaN or inf values", 1),
    Case("sample-real-stats-wrong-keys", "test_ddgan.py",
         sample("--compute_fid", "--real_img_dir", "s.npz", "--num_samples", "2",
                setup=arrays("s.npz", mean=np.zeros(2048), cov=np.eye(2048))),
         "holds the arrays mean, cov: neither FID statistics (keys mu and sigma) nor samples", 1),
    Case("sample-real-truncated-npz", "test_ddgan.py",
         sample("--compute_pr", "--real_img_dir", "r.npz", "--num_samples", "4",
                setup=write_file("r.npz", b"PK\x03\x04 cut short")), "the file is truncated or not an .npz", 1),
    Case("sample-real-bool-npy", "test_ddgan.py",
         sample("--compute_pr", "--real_img_dir", "r.npy", "--num_samples", "4",
                setup=arrays("r.npy", np.ones((4, 16, 16, 3), bool))), "got dtype bool", 1),
    Case("sample-real-nan-npy", "test_ddgan.py",
         sample("--compute_pr", "--real_img_dir", "r.npy", "--num_samples", "4", setup=arrays("r.npy", FLOAT_NAN)),
         "r.npy hold NaN or inf values", 1),
    Case("sample-real-empty-folder", "test_ddgan.py",
         sample("--compute_fid", "--real_img_dir", "real", "--num_samples", "2", setup=made("real")),
         "no image files", 1),
    Case("sample-real-only-folder-and-fifo-named-png", "test_ddgan.py",
         sample("--compute_fid", "--real_img_dir", "real", "--num_samples", "2",
                setup=on(made("real/a.png"), made("real/b.png", "fifo"))), "no image files", 1),
    Case("sample-real-unfinished-run", "test_ddgan.py",
         sample("--compute_fid", "--real_img_dir", "run", "--num_samples", "2",
                setup=sample_run("run", complete=False)), "holds an unfinished sampling run", 1),
    Case("sample-real-too-few-for-pr", "test_ddgan.py",
         sample("--compute_pr", "--real_img_dir", "real", "--num_samples", "4", setup=pngs("real", 3)),
         "pr needs at least 4 real images (k = 3), got 3", 1),
    Case("sample-weights-is-a-folder", "test_ddgan.py",
         sample("--compute_fid", "--real_img_dir", "real", "--num_samples", "2", "--inception_weights", "real",
                setup=pngs("real")), "--inception_weights real is a folder", 1),
    Case("sample-checkpoint-is-a-folder", "test_ddgan.py",
         sample("--checkpoint", "real", setup=pngs("real")), "real is a folder", 1),
    Case("sample-no-inception-weights", "test_ddgan.py",
         sample("--compute_fid", "--real_img_dir", "real", "--num_samples", "2", setup=pngs("real")),
         "pass --inception_weights PATH, set DDGAN_INCEPTION_WEIGHTS=PATH", 1),
    Case("sample-checkpoint-other-dict", "test_ddgan.py",
         sample("--checkpoint", "opt.pth", setup=lambda s: torch.save({"step": 3, "lr": 0.1}, s / "opt.pth")),
         "opt.pth is not a generator checkpoint (expected a state dict or {'state_dict', 'config'}): pass a "
         "netG_{epoch}.pth of the run", 1),
    Case("sample-checkpoint-empty-dict", "test_ddgan.py",
         sample("--checkpoint", "empty.pth", setup=lambda s: torch.save({}, s / "empty.pth")),
         "empty.pth is not a generator checkpoint", 1),
    Case("sample-lock-is-a-folder", "test_ddgan.py",
         sample("--sample_dir", "out", "--num_samples", "2", setup=made("out/.lock")),
         "out/.lock is a folder where a lock file goes: remove or rename it", 1),
    Case("sample-mode-classifier-missing", "test_ddgan.py",
         sample("--dataset", "stackmnist", "--mode_coverage", "--mode_classifier", "mnist.pt"),
         "classifier file mnist.pt not found", 1),
    Case("sample-mode-classifier-is-a-folder", "test_ddgan.py",
         sample("--dataset", "stackmnist", "--mode_coverage", "--mode_classifier", "real", setup=pngs("real")),
         "classifier file real is a folder", 1),
    # flags
    Case("sample-unknown-metric", "test_ddgan.py", sample("--metrics", "fid,psnr"), "unknown metric 'psnr'", 2),
    Case("sample-too-few-for-is", "test_ddgan.py", sample("--metrics", "is", "--num_samples", "5"),
         "is needs --num_samples 10 or more", 2),
    Case("sample-negative-workers", "test_ddgan.py", sample("--num_workers", "-1"), "-1 is out of range", 2),
    Case("sample-nan-repeats", "test_ddgan.py", sample("--measure_time", "--time_repeats", "nan"),
         "--time_repeats: expected an integer, got 'nan'", 2),
    Case("sample-bad-device", "test_ddgan.py", sample("--device", "tpu"), "unknown device 'tpu'", 2),
]

# ----------------------------------------------------------------------------- pytorch_fid, metrics
FID, IS, PR, MODES = "-m pytorch_fid.fid_score", "pytorch_fid/inception_score.py", "-m pytorch_fid.precision_recall", \
    "-m metrics.mode_coverage"
METRIC_CASES = [
    # FID: every source is checked before a network is built
    Case("metric-fid-missing-path", "-m pytorch_fid", in_scratch("missing", "real", setup=pngs("real")),
         "missing does not exist", 1),
    Case("metric-fid-empty-folder", FID, in_scratch("empty", "real", setup=on(made("empty"), pngs("real"))),
         "no image files", 1),
    Case("metric-fid-folder-and-fifo-named-png", FID,
         in_scratch("odd", "real", setup=on(made("odd/a.png"), made("odd/b.png", "fifo"), pngs("real"))),
         "no image files", 1),
    Case("metric-fid-one-image", FID, in_scratch("one", "real", setup=on(pngs("one", 1), pngs("real"))),
         "FID statistics need at least 2 images, one has 1", 1),
    Case("metric-fid-dims-differ", FID,
         in_scratch("a.npz", "b.npz", setup=on(arrays("a.npz", mu=np.zeros(64), sigma=np.eye(64)),
                                               arrays("b.npz", mu=np.zeros(192), sigma=np.eye(192)))),
         "compute both with the same --dims", 1),
    Case("metric-fid-nan-stats", FID,
         in_scratch("s.npz", "real", setup=on(arrays("s.npz", **NAN_STATS), pngs("real"))), "NaN or inf", 1),
    Case("metric-fid-stats-mu-only", FID,
         in_scratch("s.npz", "real", setup=on(arrays("s.npz", mu=np.zeros(8)), pngs("real"))),
         "s.npz has mu but no sigma", 1),
    Case("metric-fid-stats-wrong-keys", FID,
         in_scratch("s.npz", "real", setup=on(arrays("s.npz", mean=np.zeros(8), cov=np.eye(8)), pngs("real"))),
         "holds the arrays mean, cov: neither FID statistics", 1),
    Case("metric-fid-truncated-npz", FID,
         in_scratch("s.npz", "real", setup=on(write_file("s.npz", b"PK\x03\x04 cut"), pngs("real"))),
         "cannot read s.npz", 1),
    Case("metric-fid-channels-first-npy", FID,
         in_scratch("x.npy", "real", setup=on(arrays("x.npy", np.zeros((2, 3, 8, 8), np.uint8)), pngs("real"))),
         "transpose", 1),
    Case("metric-fid-nan-npy", FID, in_scratch("x.npy", "real", setup=on(arrays("x.npy", FLOAT_NAN), pngs("real"))),
         "x.npy hold NaN or inf values", 1),
    Case("metric-fid-unfinished-run", FID, in_scratch("run", "real", setup=on(sample_run("run", complete=False),
                                                                              pngs("real"))),
         "run holds an unfinished sampling run", 1),
    Case("metric-fid-mixed-run", FID,
         in_scratch("run", "real", setup=on(sample_run("run"), write_file("run/old_1.png"), pngs("real"))),
         "run mixes a sampling run of 4 images with other files", 1),
    Case("metric-fid-damaged-manifest", FID,
         in_scratch("run", "real", setup=on(pngs("run"), write_file("run/manifest.json", b"{"), pngs("real"))),
         "not a readable sample manifest", 1),
    Case("metric-fid-weights-is-a-folder", FID, in_scratch("real", "real", "--weights", "real", setup=pngs("real")),
         "--weights real is a folder", 1),
    Case("metric-fid-no-weights", FID, in_scratch("real", "real", setup=pngs("real")),
         "pass --weights PATH, set DDGAN_INCEPTION_WEIGHTS=PATH", 1),
    Case("metric-fid-save-stats-exists", FID,
         in_scratch("--save-stats", "real", "s", setup=on(pngs("real"), write_file("s.npz"))),
         "s.npz already exists", 1),
    Case("metric-fid-save-stats-to-a-folder", FID,
         in_scratch("--save-stats", "real", "out", setup=on(pngs("real"), made("out"))),
         "the statistics file out is a folder: give a file name", 1),
    Case("metric-fid-save-stats-below-a-file", FID,
         in_scratch("--save-stats", "real", "notes/s.npz", setup=on(pngs("real"), write_file("notes"))),
         "lies below the file", 1),
    Case("metric-fid-bad-device", FID, in_scratch("a", "b", "--device", "tpu9"), "unknown device", 2),
    Case("metric-fid-zero-batch", FID, in_scratch("a", "b", "--batch-size", "0"), "0 is out of range", 2),
    Case("metric-fid-bad-dims", FID, in_scratch("a", "b", "--dims", "100"), "invalid choice", 2),
    # Inception Score
    Case("metric-is-nan-npy", IS, in_scratch("--sample_dir", "x.npy", setup=arrays("x.npy", FLOAT_NAN)),
         "NaN or inf", 1),
    Case("metric-is-inf-npz", IS,
         in_scratch("--sample_dir", "x.npz", setup=arrays("x.npz", samples=np.full((12, 8, 8, 3), np.inf))),
         "NaN or inf", 1),
    Case("metric-is-bool-npy", IS,
         in_scratch("--sample_dir", "x.npy", setup=arrays("x.npy", np.ones((12, 8, 8, 3), bool))), "dtype bool", 1),
    Case("metric-is-one-image-npy", IS,
         in_scratch("--sample_dir", "x.npy", setup=arrays("x.npy", np.ones((8, 8, 3), np.uint8))), "got shape", 1),
    Case("metric-is-unfinished-run", IS, in_scratch("--sample_dir", "run", setup=sample_run("run", 12, False)),
         "holds an unfinished sampling run", 1),
    Case("metric-is-mixed-run", IS,
         in_scratch("--sample_dir", "run", setup=on(sample_run("run", 12), pngs("run/extra", 1),
                                                   lambda s: shutil.move(s / "run/extra/0.png", s / "run/12.png"))),
         "1 image files not from the run", 1),
    Case("metric-is-truncated-samples-npz", IS,
         in_scratch("--sample_dir", "run", setup=write_file("run/samples.npz", b"PK\x03\x04")), "cannot read", 1),
    Case("metric-is-too-few", IS, in_scratch("--sample_dir", "real", setup=pngs("real", 3)),
         "is needs at least 10 samples (one per split), got 3", 1),
    Case("metric-is-no-weights", IS, in_scratch("--sample_dir", "real", setup=pngs("real", 12)),
         "pass --weights PATH", 1),
    Case("metric-is-zero-splits", IS, in_scratch("--sample_dir", "x", "--splits", "0"), "0 is out of range", 2),
    Case("metric-is-nan-splits", IS, in_scratch("--sample_dir", "x", "--splits", "nan"), "expected an integer", 2),
    # precision/recall
    Case("metric-pr-stats-as-real", PR,
         in_scratch("s.npz", "fake", setup=on(arrays("s.npz", mu=np.zeros(8), sigma=np.eye(8)), pngs("fake"))),
         "pr needs real images, but s.npz holds FID statistics", 1),
    Case("metric-pr-too-few-fake", PR, in_scratch("real", "fake", setup=on(pngs("real"), pngs("fake", 3))),
         "pr needs at least 4 FAKE images (k = 3), got 3", 1),
    Case("metric-pr-zero-k", PR, in_scratch("real", "fake", "--k", "0"), "0 is out of range", 2),
    Case("metric-pr-no-weights", PR, in_scratch("real", "real", setup=pngs("real")), "pass --weights PATH", 1),
    # mode coverage
    Case("metric-modes-nan-samples", MODES,
         in_scratch("--samples", "x.npy", setup=arrays("x.npy", np.full((2, 3, 8, 8), np.nan, np.float32))),
         "the samples hold NaN or inf values", 1),
    Case("metric-modes-truncated-npz", MODES, in_scratch("--samples", "x.npz", setup=write_file("x.npz", b"PK")),
         "cannot read x.npz", 1),
    Case("metric-modes-missing-classifier", MODES,
         in_scratch("--dataset", "stackmnist", "--mode_classifier", "none.pt", "--samples", "x.npy",
                    setup=arrays("x.npy", np.zeros((2, 8, 8, 3), np.uint8))), "classifier file none.pt not found", 1),
    Case("metric-modes-train-into-a-folder", MODES,
         in_scratch("--train_mnist", ".", "--mode_classifier", "out", setup=made("out")),
         "the classifier file out is a folder: give a file name", 1),
    Case("metric-modes-train-without-mnist", MODES, in_scratch("--train_mnist", "."), "is missing: put MNIST's idx", 1),
    Case("metric-modes-corrupt-cache", MODES,
         in_scratch("--samples", "x.npy", setup=on(arrays("x.npy", np.zeros((2, 8, 8, 3), np.uint8)),
                                                   write_file("cache/ddgan/digits_classifier_v1.pt", b"garbage"))),
         "the cache file is damaged: delete it; it is trained again (seconds) on first use", 1,
         env={"XDG_CACHE_HOME": "{scratch}/cache"}),
    Case("metric-modes-empty-cache-file", MODES,
         in_scratch("--samples", "x.npy", setup=on(arrays("x.npy", np.zeros((2, 8, 8, 3), np.uint8)),
                                                   write_file("cache/ddgan/digits_classifier_v1.pt"))),
         "the cache file is damaged: delete it", 1, env={"XDG_CACHE_HOME": "{scratch}/cache"}),
    Case("metric-modes-samples-missing", MODES, in_scratch("--samples", "x.npy"),
         "x.npy does not exist: give a .npy/.npz sample array", 1),
    Case("metric-modes-samples-image-folder", MODES, in_scratch("--samples", "real", setup=pngs("real")),
         "real is a folder without samples.npz: give a .npy/.npz sample array", 1),
    # sample arrays: one rule for the value range (metrics.images.pixel_range), in every command
    *[Case(f"{name}-{kind}-array", command, in_scratch(*flags, "x.npy", *more, setup=on(arrays("x.npy", array),
                                                                                          pngs("real"))),
           message, 1)
      for name, command, flags, more in [("metric-modes", MODES, ["--samples"], []),
                                         ("metric-fid", FID, [], ["real"]),
                                         ("metric-is", IS, ["--sample_dir"], [])]
      for kind, array, message in [
          ("ambiguous", OVERSHOT, "hold float32 values in [0, 1.5]: [0, 1] overshot, or a nearly black [0, 255]?"),
          ("outside", np.full((2, 8, 8, 3), -3.0, np.float32), "outside every pixel range (uint8 [0, 255]; float"),
          ("binary", np.ones((2, 8, 8, 3), np.int64), "integers are read as [0, 255]; multiply them by 255")]],
]

# ----------------------------------------------------------------------------- utils.plot_metrics
PLOT = "-m utils.plot_metrics"


def records(*lines, folder="run"):
    """``folder``/metrics.jsonl holding ``lines`` (see ``records_text``)."""
    return write_file(f"{folder}/metrics.jsonl", records_text(*lines).encode())


GOOD = records(RECORD, {**RECORD, "epoch": 1})
PLOT_CASES = [
    Case("plot-output-is-the-input", PLOT, in_scratch("run", "--output", "run/metrics.jsonl", setup=GOOD),
         "--output run/metrics.jsonl: matplotlib cannot write .jsonl files; give a .png", 1),
    Case("plot-output-is-content", PLOT,
         in_scratch("run", "--output", "run/content.pth", setup=on(GOOD, write_file("run/content.pth", b"state"))),
         "matplotlib cannot write .pth files", 1),
    Case("plot-output-below-a-file", PLOT, in_scratch("run", "--output", "notes/m.png",
                                                      setup=on(GOOD, write_file("notes"))),
         "--output notes/m.png lies below the file", 1),
    Case("plot-line-not-json", PLOT, in_scratch("run", setup=records(RECORD, "", "{oops", RECORD)),
         "run/metrics.jsonl line 3 is not JSON: correct or delete the line", 1),
    Case("plot-text-value", PLOT, in_scratch("run", setup=records(RECORD, {**RECORD, "kl": "5.0"})),
         'run/metrics.jsonl line 2: "kl" is "5.0", not a number', 1),
    Case("plot-no-epoch", PLOT, in_scratch("run", setup=records({"kl": 1.0})), 'line 1 has no "epoch"', 1),
    Case("plot-run-missing", PLOT, in_scratch("nowhere"), "nowhere does not exist: give the run folder", 1),
    Case("plot-no-records", PLOT, in_scratch("run", setup=made("run")), "no metrics.jsonl in run: train with --metrics",
         1),
    Case("plot-records-is-a-folder", PLOT, in_scratch("run", setup=made("run/metrics.jsonl")),
         "run/metrics.jsonl is a folder, not the run's metrics.jsonl", 1),
    Case("plot-empty-records", PLOT, in_scratch("run", setup=records()), "no metric values in run/metrics.jsonl", 1),
]

# ----------------------------------------------------------------------------- datasets_prep
PREPARE = "-m datasets_prep.prepare_lmdb"
DATA_CASES = [
    # prepare_lmdb --input: where the LMDB may go, what the input may hold, flags
    Case("prepare-output-inside-input", PREPARE,
         lambda s: ["--input", noise_pngs(s / "images"), "--output", s / "images" / "db"], "is inside --input", 1),
    Case("prepare-output-is-input", PREPARE,
         lambda s: ["--input", noise_pngs(s / "images"), "--output", s / "images"], "is inside --input", 1),
    Case("prepare-output-is-file", PREPARE,
         lambda s: write_file("notes")(s) or ["--input", noise_pngs(s / "images"), "--output", s / "notes"],
         "notes already exists: delete it or choose another --output", 1),
    Case("prepare-output-under-file", PREPARE,
         lambda s: write_file("notes")(s) or ["--input", noise_pngs(s / "images"), "--output", s / "notes" / "db"],
         "notes is a file, not a folder; choose another --output", 1),
    Case("prepare-output-unwritable", PREPARE,
         lambda s: ["--input", noise_pngs(s / "images"), "--output", f"{formats.unwritable_folder(s)}/db"],
         "choose another --output", 1),
    Case("prepare-output-in-use", PREPARE,
         lambda s: held_by_another_run("db", "prepare")(s) or [
             "--input", noise_pngs(s / "images"), "--output", s / "db"],
         "db is being written by another prepare_lmdb (pid", 1),
    Case("prepare-fifo-in-input", PREPARE,
         lambda s: ["--input", formats.images_with(s / "images", "fifo"), "--output", s / "db"],
         "bad.png is a FIFO, not an image file", 1),
    Case("prepare-broken-link-in-input", PREPARE,
         lambda s: ["--input", formats.images_with(s / "images", "broken_link"), "--output", s / "db"],
         "bad.png is a broken symbolic link", 1),
    Case("prepare-input-missing", PREPARE, lambda s: ["--input", s / "missing", "--output", s / "db"],
         "missing is not a folder: pass a folder of images", 1),
    Case("prepare-input-empty", PREPARE,
         lambda s: (s / "empty").mkdir() or ["--input", s / "empty", "--output", s / "db"], "no images", 1),
    Case("prepare-nan-resolution", PREPARE, lambda s: ["--input", s, "--output", s / "db", "--resolution", "nan"],
         "--resolution: expected an integer, got 'nan'", 2),
    Case("prepare-negative-resolution", PREPARE,
         lambda s: ["--input", s, "--output", s / "db", "--resolution", "-256"], "--resolution: -256 is out of range",
         2),
    Case("prepare-zero-workers", PREPARE, lambda s: ["--input", s, "--output", s / "db", "--workers", "0"],
         "--workers: 0 is out of range", 2),
    Case("prepare-no-mode", PREPARE, lambda s: ["--output", s / "db"], "pass one of --input DIR", 2),
    Case("prepare-no-output", PREPARE, lambda s: ["--input", noise_pngs(s / "images")], "--output is required", 2),
    # prepare_lmdb --lsun_export and --check
    Case("export-into-file", PREPARE, lambda s: write_file("notes")(s) or [
        "--lsun_export", formats.tiny_lsun_lmdb(s / "lsun"), "--output", s / "notes"], "is a file: give a folder", 1),
    Case("export-under-file", PREPARE, lambda s: write_file("notes")(s) or [
        "--lsun_export", formats.tiny_lsun_lmdb(s / "lsun"), "--output", s / "notes" / "out"],
         "notes is a file, not a folder", 1),
    Case("export-into-the-lmdb", PREPARE,
         lambda s: ["--lsun_export", formats.tiny_lsun_lmdb(s / "lsun"), "--output", s / "lsun" / "images"],
         "is inside the LMDB", 1),
    Case("export-unwritable", PREPARE, lambda s: [
        "--lsun_export", formats.tiny_lsun_lmdb(s / "lsun"), "--output", f"{formats.unwritable_folder(s)}/out"],
         "choose another --output", 1),
    Case("export-not-an-lmdb", PREPARE, lambda s: ["--lsun_export", noise_pngs(s / "images"), "--output", s / "out"],
         "no LSUN LMDB in", 1),
    Case("export-truncated-lmdb", PREPARE,
         lambda s: ["--lsun_export", formats.write_truncated_lmdb(s / "lsun"), "--output", s / "out"],
         "data.mdb is truncated", 1),
    Case("check-missing", PREPARE, lambda s: ["--check", s / "missing"], "--check", 1),
    # train_ddgan.py: data that cannot be read, found before anything is written
    Case("data-cifar10-absent-offline", "train_ddgan.py", train("--dataset", "cifar10", "--datadir", "nothing"),
         "CIFAR-10 is not in nothing/cifar-10-batches-py and downloads are off", 1),
    Case("data-cifar10-tampered", "train_ddgan.py", train("--dataset", "cifar10", setup=lambda s: [
        "--datadir", formats.write_tampered_cifar10(s / "data") or s / "data"]),
         "data_batch_1 is not a CIFAR-10 python batch (it refers to posix.system", 1),
    Case("data-stackmnist-absent-offline", "train_ddgan.py", train("--dataset", "stackmnist", "--datadir", "nothing"),
         "MNIST is not in nothing/MNIST/raw and downloads are off", 1),
    Case("data-folder-fifo", "train_ddgan.py",
         train("--dataset", "folder", setup=lambda s: ["--datadir", formats.images_with(s / "images", "fifo")]),
         "bad.png is a FIFO, not an image file", 1),
    Case("data-folder-broken-link", "train_ddgan.py",
         train("--dataset", "folder", setup=lambda s: ["--datadir", formats.images_with(s / "images", "broken_link")]),
         "bad.png is a broken symbolic link", 1),
    Case("data-folder-corrupt-image", "train_ddgan.py",
         train("--dataset", "folder", setup=lambda s: ["--datadir", formats.images_with(s / "images", "corrupt")]),
         "bad.png is not a readable image", 1),
    Case("data-folder-empty", "train_ddgan.py",
         train("--dataset", "folder", setup=lambda s: (s / "empty").mkdir() or ["--datadir", s / "empty"]),
         "no images", 1),
    Case("data-lmdb-unfinished", "train_ddgan.py",
         train("--dataset", "celeba_256", setup=lambda s: (s / "db.partial").mkdir() or ["--datadir", s / "db"]),
         "is unfinished", 1),
    Case("data-lmdb-not-an-lmdb", "train_ddgan.py",
         train("--dataset", "ffhq_256", setup=lambda s: write_file("db/data.mdb", b"garbage" * 100)(s) or [
             "--datadir", s / "db"]), "cannot open the LMDB", 1),
    Case("data-lmdb-is-lsun", "train_ddgan.py",
         train("--dataset", "ffhq_256", setup=lambda s: ["--datadir", formats.tiny_lsun_lmdb(s / "lsun")]),
         "is not an image LMDB", 1),
    Case("data-lsun-truncated", "train_ddgan.py",
         train("--dataset", "lsun", setup=lambda s: ["--datadir", formats.write_truncated_lmdb(s / "lsun")]),
         "data.mdb is truncated", 1),
    Case("data-lsun-no-datadir", "train_ddgan.py", train("--dataset", "lsun"), "--datadir is required", 1),
    Case("data-nan-digits-length", "train_ddgan.py", train("--stacked_digits_length", "nan"),
         "--stacked_digits_length: expected an integer, got 'nan'", 2),
]

CASES = TRAIN_CASES + SAMPLE_CASES + METRIC_CASES + PLOT_CASES + DATA_CASES


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory, templates):
    """Run every selected case at once (four at a time; interpreter start-up dominates):
    {case id: (result, digests before, digests after)}."""
    here = request.node.path
    selected = [item.callspec.params["case"] for item in request.session.items
                if item.path == here and "case" in getattr(item, "callspec", SimpleNamespace(params={})).params]
    root = tmp_path_factory.mktemp("bad_inputs")

    def run(case):
        scratch = root / case.id / "scratch"
        scratch.mkdir(parents=True)
        arguments = case.arguments(scratch)
        before = file_digests(scratch)
        extra = {name: value.format(scratch=scratch) for name, value in case.env.items()}
        result = run_command(case.command, *arguments, cwd=scratch, env=cli_env(root / case.id, **extra))
        return result, before, file_digests(scratch)

    try:
        with ThreadPoolExecutor(4) as pool:
            return dict(zip([case.id for case in selected], pool.map(run, selected), strict=True))
    finally:
        while HELD:
            HELD.pop().release()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gives_one_line_and_changes_nothing(case, outcomes):
    result, before, after = outcomes[case.id]
    line = one_error_line(result)
    assert case.expect in line, line
    if case.code is not None:
        assert result.returncode == case.code, (result.returncode, line)
    assert {path: after.get(path) for path in before} == before, "a file was changed or removed"
    if not case.writes:
        assert after.keys() == before.keys(), f"new files: {sorted(after.keys() - before.keys())}"
