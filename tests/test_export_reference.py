"""A generator file the reference's test_ddgan.py loads unchanged (python -m score_sde.export_reference)."""

import json

import pytest
import torch

from score_sde import checkpoint, legacy
from score_sde.export_reference import reference_flags, reference_payload
from score_sde.models.ncsnpp_generator_adagn import NCSNpp
from tests.conftest import one_error_line, run_command, tiny_config, tiny_generator
from tests.fixtures.compact import load_layout
from utils.flags import namespace


def load_as_the_reference_does(path, config):
    """The reference's test_ddgan.py: torch.load, drop the first 7 characters of every key, load strictly."""
    ckpt = torch.load(path, map_location="cpu")
    for key in list(ckpt.keys()):
        ckpt[key[7:]] = ckpt.pop(key)
    generator = NCSNpp(namespace(config))
    generator.load_state_dict(ckpt)
    return generator.eval()


@pytest.fixture
def exported(tmp_path):
    config = tiny_config()
    generator = tiny_generator(config, seed=3)
    source = tmp_path / "netG_3.pth"
    checkpoint.save_generator(source, generator, config, epoch=3)
    result = run_command("-m score_sde.export_reference", source, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return generator, config, tmp_path / "netG_3_reference.pth", result.stdout


def test_the_reference_loads_the_exported_file_unchanged(exported):
    generator, config, path, _ = exported
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert all(key.startswith("module.all_modules.") or key.startswith("module.") for key in payload)
    loaded = load_as_the_reference_does(path, config)
    x, t, z = torch.randn(2, 3, 16, 16), torch.tensor([0, 3]), torch.randn(2, config["nz"])
    with torch.no_grad():
        assert torch.equal(loaded(x, t, z), generator(x, t, z))


def test_the_configuration_is_kept_beside_it_and_printed(exported):
    _, config, path, stdout = exported
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["config"] == config
    assert sidecar["reference_flags"] in stdout
    assert "--num_channels_dae 8" in stdout and "--ch_mult 1 2" in stdout and "--nz 8" in stdout


def test_the_real_cifar10_generator_exports_the_released_keys():
    layout = load_layout()["cifar10"]
    generator = NCSNpp(namespace(layout["generator_args"]))
    payload = reference_payload(legacy.reference_state_dict(generator))
    released = {f"module.{key}": shape for key, shape in layout["generator_state_dict"].items()}
    assert {key: list(value.shape) for key, value in payload.items()} == released


def test_reference_flags_use_the_references_switches():
    config = tiny_config(centered=False, not_use_tanh=True, attn_resolutions=[8])
    flags, inexpressible = reference_flags(config)
    assert "--centered" in flags.split() and "--not_use_tanh" in flags.split()  # store_false / store_true there
    assert "--fir" not in flags.split() and "--ngf" not in flags
    assert inexpressible == ["--attn_resolutions 8"]


@pytest.mark.parametrize("case", ["exists", "itself", "plain", "missing"])
def test_bad_exports_are_one_line(exported, case):
    _, _, path, _ = exported
    source = path.parent / "netG_3.pth"
    argv = {"exists": [source], "itself": [source, source], "plain": [path, path.parent / "again.pth"],
            "missing": [path.parent / "netG_9.pth"]}[case]
    before = {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()}
    line = one_error_line(run_command("-m score_sde.export_reference", *argv, cwd=path.parent))
    expected = {"exists": "already exists", "itself": "is the checkpoint being exported",
                "plain": "already a plain state dict", "missing": "not found"}[case]
    assert expected in line
    assert {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()} == before
