"""Every command line on bad input: a non-zero exit, one line on stderr that says what to do,
no traceback, and every file that was there before unchanged (md5), with nothing new written
unless the case allows it.

Each row is a ``Case``: the command, a function that lays out files in a scratch folder and
returns the arguments, and a fragment the error line must contain.  New flags, commands and
file kinds join the tables below; one table per command, so that rows are easy to find.
"""

import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tests import _data_formats as formats
from tests.conftest import cli_env, file_digests, one_error_line, run_command

TINY_TRAIN = ["--dataset", "stacked_digits", "--stacked_digits_length", "64", "--image_size", "16",
              "--num_channels_dae", "8", "--ch_mult", "1", "2", "--num_res_blocks", "1", "--n_mlp", "1",
              "--ngf", "4", "--nz", "8", "--z_emb_dim", "16", "--t_emb_dim", "16", "--batch_size", "4",
              "--num_workers", "0", "--no-tensorboard", "--device", "cpu", "--num_epoch", "1",
              "--max_iters_per_epoch", "1"]


@dataclass
class Case:
    id: str
    command: str  # a script relative to the repository, or "-m module"
    arguments: Callable  # (scratch folder: Path) -> list of arguments; may write files there first
    expect: str  # a fragment of the error line
    code: int | None = None  # the exit status, when it matters (argparse: 2)
    writes: bool = False  # the command may create new files (it must still change none)


def write_pngs(folder, count=4, size=16, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


def train(*extra, setup=None):
    """Arguments of a tiny training run saving under ``scratch/runs``, plus ``extra``; ``setup(scratch)``
    lays out files first and may return more arguments."""

    def arguments(scratch):
        more = setup(scratch) if setup is not None else None
        return [*TINY_TRAIN, "--save_dir", scratch / "runs", *map(str, extra), *map(str, more or [])]

    return arguments


TEMPLATES = {}  # name -> folder made once by the ``templates`` fixture, copied into a case's scratch


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """A finished tiny run (EMA, content.pth) that cases copy."""
    import train_ddgan

    root = tmp_path_factory.mktemp("templates")
    train_ddgan.main([*TINY_TRAIN, "--save_dir", str(root / "runs"), "--use_ema", "--ema_decay", "0.9",
                      "--save_content", "--max_iters_per_epoch", "0"])
    TEMPLATES["run"] = root / "runs"
    return TEMPLATES


def trained_run(scratch):
    """Copy the trained tiny run to ``scratch/runs`` (the --save_dir of ``train``)."""
    shutil.copytree(TEMPLATES["run"], scratch / "runs")


def write_file(name, data=b""):
    def setup(scratch):
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_bytes(data)
    return setup


# ----------------------------------------------------------------------------- train_ddgan.py
def images(name="images", count=8):
    """A folder of PNGs in the scratch folder, as --dataset folder --datadir."""
    def setup(scratch):
        write_pngs(scratch / name, count)
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
    Case("train-unknown-metric", "train_ddgan.py", train("--metrics", "fid,bogus"), "bogus", 1),
    Case("train-missing-real", "train_ddgan.py", train("--metrics", "fid", "--real_img_dir", "no_such_dir"),
         "--real_img_dir no_such_dir does not exist", 1),
    Case("train-missing-datadir", "train_ddgan.py", train("--dataset", "folder", "--datadir", "missing"),
         "missing", 1),
    Case("train-channels", "train_ddgan.py", train("--num_channels", "1", setup=images()), "fix --num_channels", 1),
    Case("train-too-few-images", "train_ddgan.py", train(setup=images(count=2)), "fewer than one --batch_size 4",
         1),
    Case("train-save-dir-is-file", "train_ddgan.py", train(setup=lambda s: write_file("taken")(s) or
                                                             ["--save_dir", s / "taken"]),
         "is a file", 1),
    Case("train-save-dir-under-file", "train_ddgan.py", train(setup=lambda s: write_file("taken")(s) or
                                                                ["--save_dir", s / "taken" / "runs"]),
         "is a file", 1),
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
    Case("train-resume-epochs-below", "train_ddgan.py",
         train("--resume", setup=trained_run_and("--num_epoch", "1", "--max_iters_per_epoch", "0")),
         "already finished epoch 1", 1),
]

# ----------------------------------------------------------------------------- test_ddgan.py
SAMPLE_CASES = []

# ----------------------------------------------------------------------------- pytorch_fid
METRIC_CASES = []

# ----------------------------------------------------------------------------- datasets_prep
PREPARE = "-m datasets_prep.prepare_lmdb"
DATA_CASES = [
    # prepare_lmdb --input: where the LMDB may go, what the input may hold, flags
    Case("prepare-output-inside-input", PREPARE,
         lambda s: ["--input", write_pngs(s / "images"), "--output", s / "images" / "db"], "is inside --input", 1),
    Case("prepare-output-is-input", PREPARE,
         lambda s: ["--input", write_pngs(s / "images"), "--output", s / "images"], "is inside --input", 1),
    Case("prepare-output-is-file", PREPARE,
         lambda s: write_file("notes")(s) or ["--input", write_pngs(s / "images"), "--output", s / "notes"],
         "notes already exists: delete it or choose another --output", 1),
    Case("prepare-output-under-file", PREPARE,
         lambda s: write_file("notes")(s) or ["--input", write_pngs(s / "images"), "--output", s / "notes" / "db"],
         "notes is a file, not a folder; choose another --output", 1),
    Case("prepare-output-unwritable", PREPARE,
         lambda s: ["--input", write_pngs(s / "images"), "--output", f"{formats.unwritable_folder(s)}/db"],
         "choose another --output", 1),
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
    Case("prepare-no-output", PREPARE, lambda s: ["--input", write_pngs(s / "images")], "--output is required", 2),
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
    Case("export-not-an-lmdb", PREPARE, lambda s: ["--lsun_export", write_pngs(s / "images"), "--output", s / "out"],
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

CASES = TRAIN_CASES + SAMPLE_CASES + METRIC_CASES + DATA_CASES


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
        result = run_command(case.command, *arguments, cwd=scratch, env=cli_env(root / case.id))
        return result, before, file_digests(scratch)

    with ThreadPoolExecutor(4) as pool:
        return dict(zip([case.id for case in selected], pool.map(run, selected), strict=True))


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
