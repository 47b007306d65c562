"""Every command line on bad input: a non-zero exit, one line on stderr that says what to do,
no traceback, and every file that was there before unchanged (md5), with nothing new written
unless the case allows it.

Each row is a ``Case``: the command, a function that lays out files in a scratch folder and
returns the arguments, and a fragment the error line must contain.  New flags, commands and
file kinds join the tables below; one table per command, so that rows are easy to find.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from PIL import Image

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


def train(*extra):
    """Arguments of a tiny training run in the scratch folder, plus ``extra``."""
    return lambda tmp: [*TINY_TRAIN, "--save_dir", tmp / "runs", *map(str, extra)]


# ----------------------------------------------------------------------------- train_ddgan.py
TRAIN_CASES = [
    Case("train-unknown-dataset", "train_ddgan.py", train("--dataset", "imagenet"), "invalid choice", 2),
    Case("train-negative-lr", "train_ddgan.py", train("--lr_d", "-1e-4"), "--lr_d: -1e-4 is out of range", 2),
    Case("train-nan-ema", "train_ddgan.py", train("--ema_decay", "nan"), "--ema_decay: nan is not a finite", 2),
]

# ----------------------------------------------------------------------------- test_ddgan.py
SAMPLE_CASES = []

# ----------------------------------------------------------------------------- pytorch_fid
METRIC_CASES = []

# ----------------------------------------------------------------------------- datasets_prep
DATA_CASES = []

CASES = TRAIN_CASES + SAMPLE_CASES + METRIC_CASES + DATA_CASES


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gives_one_line_and_changes_nothing(case, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    arguments = case.arguments(scratch)
    before = file_digests(scratch)
    result = run_command(case.command, *arguments, cwd=scratch, env=cli_env(tmp_path))
    line = one_error_line(result)
    assert case.expect in line, line
    if case.code is not None:
        assert result.returncode == case.code, (result.returncode, line)
    after = file_digests(scratch)
    assert {path: after.get(path) for path in before} == before, "a file was changed or removed"
    if not case.writes:
        assert after.keys() == before.keys(), f"new files: {sorted(after.keys() - before.keys())}"
