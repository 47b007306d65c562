"""scripts/gpu_check.sh in its --cpu mode: every kind of step, on the CPU at tiny sizes.

The GPU run itself needs a GPU; this runs the same script logic (step processes under
timeouts, the SIGTERM-resume smoke run, the key figures, the table) where CI can.
"""

import subprocess
import sys

from tests._eval_helpers import random_digit_classifier
from tests.conftest import REPO, cli_env

SCRIPT = REPO / "scripts" / "gpu_check.sh"
STEPS = ("preflight", "classifier", "cuda_tests", "smoke", "bench_cifar10_fp32", "bench_cifar10_compile")


def gpu_check(tmp_path, *argv, **variables):
    """Run the script with ``argv``, its results under tmp_path/out."""
    env = cli_env(tmp_path, OUT=tmp_path / "out", PYTHON=sys.executable, **variables)
    return subprocess.run(["bash", str(SCRIPT), *argv], env=env, capture_output=True, text=True, timeout=600)


def rows(tmp_path):
    """{step: (status, key figure)} of the summary table."""
    table = (tmp_path / "out" / "summary.md").read_text().splitlines()
    cells = [line.strip("|").split(" | ") for line in table if line.startswith("| ") and "---" not in line]
    return {cell[0].strip(): (cell[1].strip(), cell[3].strip()) for cell in cells[1:]}


def test_every_kind_of_step_runs_on_the_cpu(tmp_path):
    classifier = random_digit_classifier(tmp_path / "digits.pt")
    result = gpu_check(tmp_path, "--cpu", "--steps", " ".join(STEPS), DDGAN_MODE_CLASSIFIER=classifier)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    table = rows(tmp_path)
    assert list(table) == list(STEPS) and all(status == "ok" for status, _ in table.values()), table
    assert table["preflight"][1].startswith("python 3.")
    assert table["cuda_tests"][1].startswith("1 passed")
    assert table["smoke"][1].startswith("SIGTERM: 143 + content.pth; resumed to epoch 2; modes ")
    assert "train_r1_step" in table["bench_cifar10_fp32"][1]
    assert (tmp_path / "out" / "bench_results.md").is_file()  # bench.py's rows, not the repository's RESULTS.md


def test_steps_past_the_budget_are_skipped_and_fail_the_check(tmp_path):
    result = gpu_check(tmp_path, "--cpu", "--steps", "preflight smoke", BUDGET=0)
    assert result.returncode == 1
    assert rows(tmp_path) == dict.fromkeys(("preflight", "smoke"), ("skipped", "out of time (BUDGET=0 s)"))


def test_an_unknown_step_is_named(tmp_path):
    result = gpu_check(tmp_path, "--steps", "preflight bogus")
    assert result.returncode == 2 and "unknown step bogus" in result.stderr, result.stderr
