"""The shared model/diffusion flags: the reference's names and defaults, typed and ranged."""

import pytest

import datasets_prep
from tests.conftest import model_parser
from utils import flags


def parse(*argv):
    return model_parser().parse_args(list(argv))


def test_reference_defaults():
    args = parse()
    expected = {
        "image_size": 32, "num_channels": 3, "centered": True, "use_geometric": False, "beta_min": 0.1,
        "beta_max": 20.0, "num_channels_dae": 128, "n_mlp": 3, "ch_mult": None, "num_res_blocks": 2,
        "attn_resolutions": [16], "dropout": 0.0, "resamp_with_conv": True, "conditional": True, "fir": True,
        "fir_kernel": [1, 3, 3, 1], "skip_rescale": True, "resblock_type": "biggan", "progressive": "none",
        "progressive_input": "residual", "progressive_combine": "sum", "embedding_type": "positional",
        "fourier_scale": 16.0, "not_use_tanh": False, "nz": 100, "num_timesteps": 4, "z_emb_dim": 256,
        "t_emb_dim": 256, "exp": "experiment_cifar_default", "dataset": "cifar10", "ngf": 64,
    }
    assert {key: getattr(args, key) for key in expected} == expected


def test_switches_keep_meaning_of_reference_flags():
    args = parse("--centered", "--no-fir", "--use_geometric", "--not_use_tanh", "--no-skip_rescale")
    assert args.centered and not args.fir and args.use_geometric and args.not_use_tanh and not args.skip_rescale


def test_lists_are_typed():
    args = parse("--attn_resolutions", "16", "8", "--fir_kernel", "1", "1", "--ch_mult", "1", "2", "2", "2")
    assert args.attn_resolutions == [16, 8] and args.fir_kernel == [1, 1] and args.ch_mult == [1, 2, 2, 2]


@pytest.mark.parametrize("argv,message", [
    (["--num_timesteps", "0"], "out of range"),
    (["--dropout", "1.5"], "out of range"),
    (["--beta_min", "-1"], "out of range"),
    (["--nz", "ten"], "expected an integer"),
    (["--dataset", "imagenet"], "invalid choice"),
    (["--resblock_type", "resnet"], "invalid choice"),
])
def test_bad_values_fail_at_parse_time(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("dataset,size,expected", [
    ("cifar10", 32, [1, 2, 2, 2]), ("celeba_256", 256, [1, 1, 2, 2, 4, 4]), ("lsun", 256, [1, 1, 2, 2, 4, 4]),
    ("folder", 64, [1, 2, 2, 2]), ("folder", 128, [1, 1, 2, 2, 4]),
])
def test_ch_mult_defaults(dataset, size, expected):
    args = flags.resolve_model_flags(parse("--dataset", dataset, "--image_size", str(size)),
                                     datasets_prep.default_ch_mult(dataset))
    assert args.ch_mult == expected


@pytest.mark.parametrize("argv,message", [
    (["--dataset", "folder", "--image_size", "48"], "pass --ch_mult"),
    (["--image_size", "20", "--ch_mult", "1", "2", "2", "2"], "not divisible"),
    (["--num_channels_dae", "18", "--ch_mult", "1"], "GroupNorm"),
    (["--num_channels_dae", "2", "--ch_mult", "1"], "GroupNorm"),
])
def test_contradicting_model_flags(argv, message):
    with pytest.raises(ValueError, match=message):
        flags.resolve_model_flags(parse(*argv))


def test_model_config_round_trip():
    args = flags.resolve_model_flags(parse("--num_channels_dae", "64"))
    config = flags.model_config(args)
    assert set(config) == set(flags.MODEL_KEYS)
    assert flags.namespace(config).num_channels_dae == 64
