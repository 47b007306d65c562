"""Shared pytest fixtures and helpers: the reference numbers, the repository paths, command lines."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DDGAN_SHARED", REPO.parent / "shared"))
REFERENCE_PT = SHARED / "reference" / "ddgan_reference.pt"
REFERENCE_LAYOUT = SHARED / "reference" / "official_checkpoint_layout.json"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def reference():
    """The numbers produced by the reference implementation (see shared/reference/README.md)."""
    if not REFERENCE_PT.is_file():
        pytest.skip(f"reference fixtures not found at {REFERENCE_PT} (set DDGAN_SHARED)")
    return torch.load(REFERENCE_PT, weights_only=True)


def rel_error(actual, expected):
    """||actual - expected|| / ||expected|| in float64 (the plain difference norm if expected is 0)."""
    expected = expected.double()
    return ((actual.double() - expected).norm() / expected.norm().clamp_min(1e-30)).item()


# ----------------------------------------------------------------------------- command lines

def cli_env(tmp_path=None, **variables):
    """The environment of a command-line test: the repository importable, one thread, no downloads,
    no Inception weights from the user's environment (an empty TORCH_HOME under ``tmp_path``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DDGAN_INCEPTION_WEIGHTS", "FID_WEIGHTS_PATH")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", DDGAN_NO_DOWNLOAD="1", PYTHONUNBUFFERED="1")
    if tmp_path is not None:
        env["TORCH_HOME"] = str(Path(tmp_path) / "empty_torch_home")
    env.update({key: str(value) for key, value in variables.items()})
    return env


def run_command(command, *argv, cwd=REPO, env=None, timeout=300):
    """Run ``python COMMAND ARGV``; ``command`` is a script path relative to the repository
    (``train_ddgan.py``) or ``-m module``.  Returns the CompletedProcess (text output)."""
    head = command.split() if command.startswith("-m ") else [str(REPO / command)]
    return subprocess.run([sys.executable, *head, *map(str, argv)], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(result):
    """The one line a failed command printed on stderr; asserts a non-zero exit and no traceback."""
    assert result.returncode != 0, f"exit 0:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    return lines[0]


def file_digests(root):
    """{relative path: md5} of every regular file under ``root``."""
    root = Path(root)
    return {str(path.relative_to(root)): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink()}
