"""Helpers for the pytorch_fid tests: tiny image sets and running the command lines offline."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pytorch_fid.inception import NO_DOWNLOAD_ENV_VAR, WEIGHTS_ENV_VARS

REPO = Path(__file__).resolve().parents[1]


def random_images(count, size=32, seed=0):
    """(count, size, size, 3) uint8 noise images."""
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def write_images(folder, images):
    """Save (N, H, W, 3) uint8 images as lossless PNGs 000.png, 001.png, ... in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    return folder


def offline_env(tmp_path, **variables):
    """The environment with no weights anywhere and downloads off: no weights variables, an empty
    TORCH_HOME, DDGAN_NO_DOWNLOAD=1; plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if k not in WEIGHTS_ENV_VARS}
    env.update(TORCH_HOME=str(tmp_path / "empty_torch_home"), **{NO_DOWNLOAD_ENV_VAR: "1"}, **variables)
    return env


def start_cli(args, env):
    """Start ``python ARGS`` from the repository root (``args`` begins with -m MODULE or a script path)."""
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process, timeout=120):
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_cli(args, env):
    return finish(start_cli(args, env))


def run_clis(commands, env):
    """Run several command lines at once (interpreter start-up dominates these tests)."""
    return [finish(process) for process in [start_cli(args, env) for args in commands]]


def error_line(result, exit_code=1):
    """The single error line of a failed run (besides warning:/note: lines), checking the exit code."""
    assert result.returncode == exit_code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines()
             if line and not line.startswith(("warning:", "note:"))]
    if exit_code == 2:  # argparse: a usage line, then the error
        lines = [line for line in lines if not line.startswith(("usage:", " "))]
    assert len(lines) == 1, result.stderr
    assert ": error: " in lines[0], lines[0]
    return lines[0]
