"""Packages depend one way.  ``LAYERS`` is the one statement of the direction (README, "Architecture"):
each package may import only the project packages listed for it, counting every import, also those
inside functions.  The command lines sit on top and may import any package."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LAYERS = {
    "utils": set(),  # helpers: no model, data, metric or training code
    "datasets_prep": {"utils"},
    "score_sde": {"utils"},
    "metrics": {"datasets_prep", "utils"},
    "pytorch_fid": {"metrics", "utils"},  # pytorch-fid's interface over metrics
    "training": {"metrics", "score_sde", "datasets_prep", "utils"},
}
# Command lines: modules on top of every package.  utils.plot_metrics keeps the path of its documented
# command line (it reads training's records and the metrics registry).
COMMAND_LINES = {"train_ddgan", "test_ddgan", "benchmarks", "utils.plot_metrics"}
PROJECT = {*LAYERS, "train_ddgan", "test_ddgan", "benchmarks", "tests"}


def project_modules():
    """(module name, path) of every project source file outside tests/."""
    for path in sorted(REPO.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[0] in PROJECT - {"tests"} and not any(part.startswith(".") for part in parts):
            yield ".".join(part for part in parts if part != "__init__"), path


def imported_packages(path):
    """The project packages ``path`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & PROJECT
    return found


def is_command_line(module):
    return any(module == entry or module.startswith(entry + ".") for entry in COMMAND_LINES)


def test_every_package_imports_only_the_ones_below_it():
    wrong = []
    for module, path in project_modules():
        package = module.split(".")[0]
        if is_command_line(module):
            continue
        extra = imported_packages(path) - LAYERS[package] - {package}
        wrong += [f"{module} imports {name}" for name in sorted(extra)]
    assert not wrong, "imports against the direction of LAYERS:\n" + "\n".join(wrong)


def test_the_table_has_no_cycle():
    """The direction is a strict order: walking down from any package never comes back to it."""
    def below(package, seen=()):
        assert package not in seen, f"cycle: {' -> '.join((*seen, package))}"
        for lower in LAYERS[package]:
            below(lower, (*seen, package))

    for package in LAYERS:
        below(package)


def test_every_package_is_in_the_table():
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")}
    assert packages == set(LAYERS) | {"benchmarks", "tests"}


MODULE_COMMANDS = ("datasets_prep.prepare_lmdb", "metrics.mode_coverage", "pytorch_fid.fid_score",
                   "pytorch_fid.inception_score", "pytorch_fid.precision_recall", "score_sde.export_reference",
                   "utils.plot_metrics")


def test_no_package_imports_its_own_command_line():
    """``python -m PACKAGE.MODULE`` imports PACKAGE first; if that imported MODULE, runpy would warn
    ("found in sys.modules ... unpredictable behaviour") on every run of the command."""
    probe = "import importlib, sys\n" + "".join(
        f"importlib.import_module({name.split('.')[0]!r})\nassert {name!r} not in sys.modules, {name!r}\n"
        for name in MODULE_COMMANDS)
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
