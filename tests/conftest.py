"""Shared pytest fixtures and helpers: the reference numbers, the repository paths, the one tiny
model configuration, and running the command lines.

Fixtures: ``reference``, ``tiny_train``, ``offline``.  Modules that need a piece at import time (a
parametrize list, a table of cases, a helper outside a test) import the plain names from
``tests.conftest``.
"""

import argparse
import hashlib
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import datasets_prep
import train_ddgan
from score_sde.models.ncsnpp_generator_adagn import NCSNpp
from tests.fixtures import compact
from utils.flags import add_common_flags, add_model_flags, model_config, namespace, resolve_model_flags

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DDGAN_SHARED", REPO.parent / "shared"))
WEIGHTS_VARIABLES = ("DDGAN_INCEPTION_WEIGHTS", "FID_WEIGHTS_PATH")  # where a user may point at Inception weights

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def reference():
    """The numbers produced by the reference implementation (see shared/reference/README.md), rebuilt
    from their compact copy in tests/fixtures."""
    return compact.load_reference()


def assert_same(a, b, where="content"):
    """Equal nested structures (dicts, lists, tensors bit for bit, NaN equal to NaN); ``where`` names a
    difference."""
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


def rel_error(actual, expected):
    """||actual - expected|| / ||expected|| in float64 (the plain difference norm if expected is 0)."""
    expected = expected.double()
    return ((actual.double() - expected).norm() / expected.norm().clamp_min(1e-30)).item()


# ----------------------------------------------------------------------------- the tiny model

# The tiny model's values where they differ from the flag defaults: a generator of ~60k parameters
# on 16 px images (attention at 16 px), T = 4, that samples in a fraction of a second on the CPU.
# A test that needs a variant says so: ``tiny_config(num_timesteps=2)``.
TINY_MODEL = {"image_size": 16, "num_channels_dae": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "n_mlp": 1,
              "nz": 8, "z_emb_dim": 16, "t_emb_dim": 16, "ngf": 4}


def config_flags(config):
    """Command-line flags that describe ``config`` (the inverse of the model flag parser)."""
    flags = []
    for key, value in config.items():
        if key == "not_use_tanh":
            flags += ["--not_use_tanh"] if value else []
        elif isinstance(value, bool):
            flags.append(f"--{key}" if value else f"--no-{key}")
        elif isinstance(value, (list, tuple)):
            flags += [f"--{key}", *map(str, value)]
        else:
            flags += [f"--{key}", str(value)]
    return flags


# train_ddgan.py on the tiny model: 64 stacked digits (no files needed), batch 4, the CPU, seed 7.
TINY_TRAIN = (*config_flags(TINY_MODEL), "--dataset", "stacked_digits", "--stacked_digits_length", "64",
              "--batch_size", "4", "--num_workers", "0", "--no-tensorboard", "--device", "cpu", "--seed", "7")


@pytest.fixture(scope="session")
def tiny_train():
    """The flags of a tiny training run: TINY_TRAIN."""
    return TINY_TRAIN


def model_parser():
    """A parser of the flags both scripts share: the experiment's, the data set's and the model's."""
    parser = argparse.ArgumentParser()
    add_common_flags(parser, seed_default=None)
    datasets_prep.add_dataset_flags(parser)
    add_model_flags(parser)
    return parser


def tiny_config(**overrides):
    """The tiny model's full configuration (the dict checkpoints carry), with ``overrides`` (flag
    names: values), checked as the scripts check their flags."""
    args = model_parser().parse_args(config_flags({**TINY_MODEL, **overrides}))
    return model_config(resolve_model_flags(args))


def tiny_generator(config=None, seed=0):
    """NCSNpp of ``config`` (default: the tiny model) in eval mode, initialised after manual_seed(seed)."""
    torch.manual_seed(seed)
    return NCSNpp(namespace(config or tiny_config())).eval()


def randomize(module):
    """Draw every parameter at random so that no layer is (nearly) zero."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.1)


def tiny_args(*extra):
    """Parsed and checked train_ddgan.py flags of the tiny run plus ``extra``."""
    return train_ddgan.parse_args([*TINY_TRAIN, *map(str, extra)])


def make_trainer(ctx, args):
    """A Trainer of ``args`` on placeholder data (64 black images): for tests that feed batches themselves."""
    from torch.utils.data import TensorDataset

    from training.trainer import Trainer

    placeholder = TensorDataset(torch.zeros(64, 3, args.image_size, args.image_size), torch.zeros(64))
    return Trainer(ctx, args, placeholder)


# ----------------------------------------------------------------------------- command lines

def cli_env(tmp_path=None, **variables):
    """The environment of a command-line test: the repository importable, one thread, no downloads,
    no Inception weights from the user's environment (an empty TORCH_HOME under ``tmp_path``)."""
    env = {k: v for k, v in os.environ.items() if k not in WEIGHTS_VARIABLES}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", DDGAN_NO_DOWNLOAD="1", PYTHONUNBUFFERED="1")
    if tmp_path is not None:
        env["TORCH_HOME"] = str(Path(tmp_path) / "empty_torch_home")
    env.update({key: str(value) for key, value in variables.items()})
    return env


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """This process as cli_env(tmp_path) runs a command: no Inception weights anywhere, downloads off."""
    for variable in WEIGHTS_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setenv("DDGAN_NO_DOWNLOAD", "1")


def _python(command, argv):
    """``python COMMAND ARGV`` as a list: ``command`` is a script path relative to the repository
    (``train_ddgan.py``), ``-m module``, or ``-c`` with the code as the first of ``argv``."""
    head = command.split(maxsplit=1) if command.startswith("-") else [str(REPO / command)]
    return [sys.executable, *head, *map(str, argv)]


def run_command(command, *argv, cwd=REPO, env=None, timeout=300):
    """Run ``python COMMAND ARGV`` (see ``_python``) in ``cwd`` with ``env`` (default: cli_env()).
    Returns the CompletedProcess (text output)."""
    return subprocess.run(_python(command, argv), cwd=cwd, env=env or cli_env(), capture_output=True, text=True,
                          timeout=timeout)


def start_command(command, *argv, cwd=REPO, env=None):
    """Start ``python COMMAND ARGV`` in the background, in a process group of its own (a signal sent
    with os.killpg(process.pid, ...) reaches its children too); ``finish`` collects it."""
    return subprocess.Popen(_python(command, argv), cwd=cwd, env=env or cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def finish(process, timeout=300):
    """Wait for a started command; its CompletedProcess.  Past ``timeout`` it is killed, and the
    TimeoutExpired raised."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_commands(*commands, cwd=REPO, env=None):
    """Run several command lines, each ``(command, *argv)``, at once (interpreter start-up dominates
    short ones); their CompletedProcesses in order."""
    return [finish(process) for process in [start_command(*command, cwd=cwd, env=env) for command in commands]]


PROGRESS_BAR = re.compile(r"\d+%\|")  # tqdm's "desc:  40%|████      | 2/5 [...]"


def visible_lines(text):
    """The lines a terminal would show for ``text`` (after each carriage return, the last text wins),
    without blank lines and progress bars."""
    lines = (line.split("\r")[-1].strip() for line in text.split("\n"))
    return [line for line in lines if line and not PROGRESS_BAR.search(line)]


def one_error_line(result, code=None, notices=False):
    """The one line a failed command printed on stderr (with ``notices``: besides its "warning:" and
    "note:" lines); asserts the exit status (``code``, else any but 0) and no traceback."""
    if code is None:
        assert result.returncode != 0, f"exit 0:\n{result.stdout}\n{result.stderr}"
    else:
        assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in visible_lines(result.stderr)
             if not (notices and line.startswith(("warning:", "note:")))]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    return lines[0]


def file_digests(root):
    """{relative path: md5} of every regular file under ``root``."""
    root = Path(root)
    return {str(path.relative_to(root)): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink()}


# ----------------------------------------------------------------------------- the cuda marker

def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` (tests/test_cuda.py's GPU variants) skip where torch sees no GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False here)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


# ----------------------------------------------------------------------------- running in parallel

@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``pytest -n N`` (pytest-xdist): whole modules go to one worker, so that a module's fixtures (a
    trained run, the table of bad inputs) are built once, not once per worker.  ``--dist`` given
    explicitly is left to xdist."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadFileScheduling

    return LoadFileScheduling(config, log)
