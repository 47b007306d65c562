"""The CUDA paths against the CPU.

Every check is a function of a device: it computes on that device and compares with the CPU.
CI runs each with ``cpu`` (tiny sizes; the CPU against itself, a run of the check's own logic);
a machine with a GPU also runs the ``cuda`` variants (marked ``cuda``, skipped elsewhere) at the
sizes of the reference fixtures (32 and 256 px, reduced widths).  fp32 with TF32 off, but where
a command line's output is compared (it runs with torch's defaults).

Tolerances:
* network outputs and the R1 penalty: relative 1e-4 (norm of the difference over the norm);
  each gradient within 1e-4 of its network's largest gradient entry;
* three training steps on the same batches with the same draws: every loss within 1e-4
  relative; the weights (G, D, EMA) by the norm of their difference, within 1 % of the norm of
  what the three steps changed.  Adam's first steps move every weight by about lr whatever
  its gradient's size, so a gradient within rounding of zero may take the other sign on
  another device and put that one weight 2 lr off, however right the arithmetic;
* the sampler from the same x_T with the same z and posterior noise: relative 1e-4; on the
  device, the same seed gives the same images byte for byte;
* metrics: Inception features and logits relative 1e-4, FID 1e-3, IS 1e-4, precision and
  recall at most one sample apart, the modes and their reverse KL equal;
* fast paths against fp32 on the same device: FAST_TOL.
On CUDA the training step and the sampling chain run with any host-device synchronisation
raising (``torch.cuda.set_sync_debug_mode("error")``).
"""

import contextlib
import copy
import functools
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datasets_prep.digits import DIGITS_SIDE
from metrics import Evaluator
from metrics import inception as inception_module
from metrics.classifiers import digit_cnn
from metrics.evaluator import SampleViews
from metrics.images import SampleArrayDataset
from score_sde import checkpoint
from score_sde.models.discriminator import Discriminator_large, Discriminator_small
from tests._data_formats import random_images
from tests._eval_helpers import FakeInception, build_fake_inception, random_digit_classifier, save_own
from tests._train_ddp_worker import Draws, perturb
from tests.conftest import (
    REPO,
    TINY_TRAIN,
    cli_env,
    config_flags,
    make_trainer,
    randomize,
    rel_error,
    run_command,
    run_commands,
    tiny_args,
    tiny_config,
    tiny_generator,
)
from training import content
from training.loss import r1_penalty
from utils import performance, sampling
from utils.distributed import Context

CPU = torch.device("cpu")
TOL = 1e-4
WEIGHT_TOL = 1e-2
FID_TOL = 1e-3
FAST_TOL = {"bf16": 5e-2, "fp16": 1e-2, "channels_last": 1e-5, "compile": 1e-4}  # test_performance's, fp16 added
# errG is read after the D step, whose Adam update (sign-like at the first step) amplifies the fast path's
# differences: fp16 measured 3.0e-2 on the CPU (its errD and R1: within FAST_TOL)
STEP_TOL = {**FAST_TOL, "fp16": 5e-2}
STEPS = 3

# The reference fixtures' sizes (shared/reference/README.md) for the GPU, tiny ones for the CPU:
# generator flags, the discriminator and its ngf.
GPU_SIZES = {
    "small": ({"image_size": 32, "num_channels_dae": 16, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 2, "n_mlp": 2,
               "z_emb_dim": 32, "t_emb_dim": 32}, Discriminator_small, 8),
    "large": ({"image_size": 256, "num_channels_dae": 8, "ch_mult": [1, 1, 2, 2, 4, 4], "num_res_blocks": 2,
               "n_mlp": 2, "z_emb_dim": 32, "t_emb_dim": 32, "num_timesteps": 2}, Discriminator_large, 4),
}
CPU_SIZES = {
    "small": ({}, Discriminator_small, 4),
    "large": ({"image_size": 64, "ch_mult": [1] * 6, "num_timesteps": 2}, Discriminator_large, 2),
}


@contextlib.contextmanager
def tf32(matmul=False, cudnn=False):
    """Within: TF32 in CUDA matrix products / cuDNN convolutions as given (default: none, as on the
    CPU; torch's own defaults, which the command lines run with, are matmul=False, cudnn=True)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(params=[pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)])
def device(request):
    """The device under test, compared with the CPU; strict fp32 while the test runs."""
    with tf32():
        yield torch.device(request.param)


@contextlib.contextmanager
def no_syncs(device, check=True):
    """Within (on CUDA, when ``check``): a host-device synchronisation raises, naming where."""
    if device.type != "cuda" or not check:
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def on(device, tensors):
    return [tensor.to(device) for tensor in tensors]


# ----------------------------------------------------------------------------- networks

def networks(device, size):
    """(config, G, D) of ``size`` at ``device``'s scale ("tiny": the CPU's small one everywhere), every
    weight drawn at random (seeded)."""
    sizes = GPU_SIZES if device.type == "cuda" and size != "tiny" else CPU_SIZES
    overrides, disc, ngf = sizes["small" if size == "tiny" else size]
    config = tiny_config(**overrides)
    generator = tiny_generator(config)
    discriminator = disc(nc=2 * config["num_channels"], ngf=ngf, t_emb_dim=config["t_emb_dim"])
    randomize(generator)
    randomize(discriminator)
    return config, generator, discriminator


def network_inputs(config, batch=4, seed=1):
    """x_t, x_{t+1}, t, z, and a cotangent for G's output (B, C, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, config["num_channels"], config["image_size"], config["image_size"])
    draw = functools.partial(torch.randn, generator=generator)
    return {"x_t": draw(shape), "x_tp1": draw(shape), "z": draw(batch, config["nz"]), "cotangent": draw(shape),
            "t": torch.randint(0, config["num_timesteps"], (batch,), generator=generator)}


def forward_backward(G, D, inputs, device):
    """On ``device`` (copies of G and D): G's output, D's logits, the R1 penalty, and the gradient
    of every parameter of one loss through all three (D's by double backward through R1).  On the CPU."""
    G, D = copy.deepcopy(G).to(device), copy.deepcopy(D).to(device)
    x = {key: value.to(device) for key, value in inputs.items()}
    x_t = x["x_t"].detach().clone().requires_grad_(True)
    out = G(x["x_tp1"], x["t"], x["z"])
    logits = D(x_t, x["t"], x["x_tp1"]).view(-1)
    penalty = r1_penalty(logits, x_t)
    (F.softplus(-logits).mean() + penalty + (out * x["cotangent"]).sum()).backward()
    values = {"G": out, "D": logits, "R1": penalty}
    values.update({f"{name}.{key}": p.grad for name, net in (("G", G), ("D", D))
                   for key, p in net.named_parameters() if p.grad is not None})
    return {key: value.detach().cpu() for key, value in values.items()}


def assert_networks_agree(ours, theirs):
    for key in ("G", "D", "R1"):
        assert rel_error(ours[key], theirs[key]) < TOL, key
    for net in ("G", "D"):
        grads = {key: value for key, value in theirs.items() if key.startswith(net + ".")}
        largest = max(value.abs().max() for value in grads.values())
        for key, value in grads.items():
            gap = (ours[key] - value).abs().max()
            assert gap <= TOL * largest, f"{key}: off by {gap:.3g}, the largest {net} gradient is {largest:.3g}"


@pytest.mark.parametrize("size", ["small", "large"])
def test_networks_forward_and_backward_match_the_cpu(device, size):
    config, G, D = networks(device, size)
    inputs = network_inputs(config)
    assert_networks_agree(forward_backward(G, D, inputs, device), forward_backward(G, D, inputs, CPU))


# ----------------------------------------------------------------------------- training

def training_flags(device):
    """The DDP test's run (EMA, R1 every other step), at the 32 px fixture's size on a GPU."""
    flags = ("--use_ema", "--ema_decay", "0.9", "--lazy_reg", "2", "--r1_gamma", "1.0")
    if device.type == "cuda":
        flags += (*config_flags(GPU_SIZES["small"][0]), "--ngf", "8")
    return flags


def twin_trainers(device, *flags):
    """A CPU trainer (weights perturbed off their zero-scaled start) and one on ``device`` with its weights."""
    torch.manual_seed(0)
    cpu = make_trainer(Context(), tiny_args(*flags))
    perturb(cpu)
    ours = make_trainer(Context(device=device), tiny_args(*flags, "--device", device.type))
    ours.generator.load_state_dict(cpu.generator.state_dict())
    ours.discriminator.load_state_dict(cpu.discriminator.state_dict())
    return cpu, ours


def step_both(cpu, ours, real, device, check_syncs=False):
    """One train_step of each on ``real``, ``ours`` with the CPU's draws; both (errD, errG, R1)."""
    with Draws().patched() as draws:
        expected = cpu.train_step(real)
    replay, real = on(device, draws.tensors), real.to(device)
    with Draws(replay).patched(), no_syncs(device, check_syncs):
        got = ours.train_step(real)
    return got, expected


def assert_losses_agree(got, expected, tol, where=""):
    for name, ours, theirs in zip(("errD", "errG", "R1"), got, expected, strict=True):
        assert (ours is None) == (theirs is None), (where, name)
        if theirs is not None:
            assert rel_error(ours.cpu(), theirs) < tol, (where, name)


def weights(trainer):
    """G, D and EMA weights, each flattened into one vector on the CPU."""
    flat = lambda tensors: torch.cat([t.detach().flatten().cpu() for t in tensors])
    return {"G": flat(trainer.generator.parameters()), "D": flat(trainer.discriminator.parameters()),
            "EMA": flat(trainer.ema.shadow.values())}


def test_three_training_steps_match_the_cpu(device):
    """The first step warms up; the next two (one with R1) run without a host-device sync on CUDA."""
    cpu, ours = twin_trainers(device, *training_flags(device))
    before = weights(cpu)
    before["EMA"] = before["G"]  # the EMA starts from G's weights at the first update
    size = cpu.args.image_size
    batches = torch.rand(STEPS, 4, 3, size, size, generator=torch.Generator().manual_seed(2)) * 2 - 1
    for step, real in enumerate(batches):
        assert_losses_agree(*step_both(cpu, ours, real, device, check_syncs=step > 0), TOL, f"step {step}")
    theirs, got = weights(cpu), weights(ours)
    for part, expected in theirs.items():
        change = (expected - before[part]).norm()
        assert change > 0, part
        assert (got[part] - expected).norm() <= WEIGHT_TOL * change, part


# ----------------------------------------------------------------------------- sampling

def test_sampler_matches_the_cpu(device):
    """The chain from the same x_T with the CPU's z and posterior noise; the seeded path on the device."""
    config, G, _ = networks(device, "small")
    x_init = torch.randn(4, 3, config["image_size"], config["image_size"], generator=torch.Generator().manual_seed(3))
    with Draws().patched() as draws:
        expected = sampling.Sampler(G, config, CPU).chain(x_init)
    sampler = sampling.Sampler(copy.deepcopy(G).to(device), config, device)
    for check in (False, True):  # a warm-up, then without a host-device sync
        replay, start = on(device, draws.tensors), x_init.to(device)
        with Draws(replay).patched(), no_syncs(device, check):
            got = sampler.chain(start)
    assert rel_error(got.cpu(), expected) < TOL
    first, second = (sampling.sample_array(sampler, 6, 4, seed=5) for _ in range(2))
    np.testing.assert_array_equal(first, second)


# ----------------------------------------------------------------------------- metrics

IMAGE = 32


def digit_margins(path, samples):
    """The smallest gap between a channel's two largest digit logits (the modes reader's input, on the CPU)."""
    model = digit_cnn(DIGITS_SIDE)
    model.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    x = F.adaptive_avg_pool2d(torch.from_numpy(samples).permute(0, 3, 1, 2).float() / 255, DIGITS_SIDE)
    with torch.no_grad():
        top = model(x.reshape(-1, 1, DIGITS_SIDE, DIGITS_SIDE)).topk(2, dim=1).values
    return (top[:, 0] - top[:, 1]).min().item()


@pytest.fixture
def inception(device, monkeypatch):
    """The CPU variant scores with FakeInception (seconds); the CUDA one with the FID network (random weights)."""
    if device.type == "cpu":
        build_fake_inception(monkeypatch, lambda **kwargs: FakeInception(IMAGE, dims=16))
    else:
        monkeypatch.setattr(inception_module, "_NETWORKS", {})


def scores(where, real, samples, classifier):
    """(fid, is, pr and modes results, Inception features, logits, mode ids) of ``samples`` on ``where``."""
    evaluator = Evaluator("fid,is,pr,modes", device=where, real=real, dataset="stacked_digits",
                          mode_classifier=str(classifier), random_weights=True, batch_size=8, splits=2)
    views = SampleViews(SampleArrayDataset(samples), evaluator)  # what Evaluator.evaluate scores, kept
    results = {}
    for metric in evaluator.metrics:
        results.update(metric.compute(views, evaluator.real, evaluator.options))
    return results, views.features, views.logits, views.mode_ids


def test_metrics_match_the_cpu(device, inception, tmp_path):
    count = 20 if device.type == "cuda" else 12
    real, samples = random_images(count, IMAGE, seed=1), random_images(count, IMAGE, seed=2)
    classifier = random_digit_classifier(tmp_path / "digits.pt")
    assert digit_margins(classifier, samples) > 1e-3  # no channel within rounding of another digit
    ours, features, logits, modes = scores(device, real, samples, classifier)
    theirs, cpu_features, cpu_logits, cpu_modes = scores(CPU, real, samples, classifier)
    assert rel_error(torch.from_numpy(features), torch.from_numpy(cpu_features)) < TOL
    assert rel_error(torch.from_numpy(logits), torch.from_numpy(cpu_logits)) < TOL
    np.testing.assert_array_equal(modes, cpu_modes)
    assert ours["fid"] == pytest.approx(theirs["fid"], rel=FID_TOL)
    assert (ours["is"], ours["is_std"]) == pytest.approx((theirs["is"], theirs["is_std"]), rel=TOL, abs=1e-6)
    for key in ("precision", "recall"):
        assert abs(ours[key] - theirs[key]) <= 1 / count + 1e-9, key
    assert (ours["modes"], ours["kl"]) == (theirs["modes"], pytest.approx(theirs["kl"], abs=1e-12))


# ----------------------------------------------------------------------------- the command lines

def test_test_ddgan_end_to_end(device, tmp_path):
    """A grid, a sample folder and mode coverage; the files equal in-process sampling on the device."""
    config = tiny_config(num_timesteps=2)
    ckpt = save_own(tmp_path / "netG_3.pth", config)
    classifier = random_digit_classifier(tmp_path / "digits.pt")
    common = ("--checkpoint", ckpt, "--dataset", "stacked_digits", "--device", device.type, "--seed", 3,
              "--batch_size", 4)
    grid, scored = run_commands(
        ("test_ddgan.py", *common, "--output_dir", tmp_path / "grid"),
        ("test_ddgan.py", *common, "--num_samples", 6, "--sample_dir", tmp_path / "samples", "--mode_coverage",
         "--mode_classifier", classifier, "--num_mode_samples", 6), env=cli_env(tmp_path))
    for result in (grid, scored):
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "grid" / "samples_stacked_digits.png").is_file()
    assert re.search(r"modes covered = \d+ / 1000, reverse KL = [0-9.]+ \(6 samples\)", scored.stdout), scored.stdout
    generator, _ = checkpoint.load_generator(ckpt, device)
    with tf32(cudnn=True):  # as test_ddgan.py runs
        expected = sampling.sample_array(sampling.Sampler(generator, config, device), 6, 4, seed=3)
    np.testing.assert_array_equal(np.load(tmp_path / "samples" / "samples.npz")["samples"], expected)


def run_folder(save_dir):
    return save_dir / "dd_gan" / "stacked_digits" / "experiment_cifar_default"


def test_training_with_mode_metrics_end_to_end(device, tmp_path):
    classifier = random_digit_classifier(tmp_path / "digits.pt")
    result = run_command("train_ddgan.py", *TINY_TRAIN, "--device", device.type, "--save_dir", tmp_path / "runs",
                         "--num_epoch", 1, "--max_iters_per_epoch", 2, "--metrics", "modes", "--metrics_every", 1,
                         "--metrics_samples", 40, "--metrics_batch_size", 20, "--mode_classifier", classifier,
                         "--save_content", cwd=tmp_path, env=cli_env(tmp_path))
    assert result.returncode == 0, result.stderr
    folder = run_folder(tmp_path / "runs")
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [0, 1]
    assert all(1 <= record["modes"] <= 40 and record["kl"] >= 0 for record in records)
    assert content.load(folder / "content.pth")["global_step"] == 4


def test_torchrun_end_to_end(device, tmp_path):
    """NCCL with two GPUs when there are two (one process on one GPU: no process group); CPU: one process.
    ``--standalone``: torchrun binds a free port itself (no race with tests running beside)."""
    processes = min(2, torch.cuda.device_count()) if device.type == "cuda" else 1
    result = run_command("-m torch.distributed.run", "--standalone", "--nproc_per_node", processes,
                         REPO / "train_ddgan.py", *TINY_TRAIN, "--device", device.type, "--num_epoch", 1,
                         "--max_iters_per_epoch", 2, "--save_content", cwd=tmp_path, env=cli_env(tmp_path), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = content.load(run_folder(tmp_path / "saved_info") / "content.pth")
    assert (saved["world_size"], len(saved["rng"]), saved["global_step"]) == (processes, processes, 4)


# ----------------------------------------------------------------------------- fast paths

def fast_outputs(G, D, inputs, device, path):
    """G's output, D's logits and (but with compile: training takes R1 through the eager D) the R1
    penalty on ``device`` along ``path`` ("fp32": the default path).  On the CPU."""
    channels_last, amp = path == "channels_last", path if path in performance.AMP_DTYPES else "none"
    G, D = (performance.prepare_model(copy.deepcopy(net).to(device), channels_last) for net in (G, D))
    if path == "compile":
        G, D = (performance.maybe_compile(net, True) for net in (G, D))
    x = {key: performance.prepare_input(value.to(device), channels_last) if value.ndim == 4 else value.to(device)
         for key, value in inputs.items()}
    x_t = x["x_t"].detach().clone().requires_grad_(path != "compile")
    with torch.set_grad_enabled(path != "compile"), performance.autocast(amp, device):
        values = {"G": G(x["x_tp1"], x["t"], x["z"]).float(), "D": D(x_t, x["t"], x["x_tp1"]).view(-1).float()}
    if path != "compile":  # as training takes it: with fp16, R1 steps run D in fp32 (training/loss.py)
        logits = values["D"] if amp != "fp16" else D(x_t, x["t"], x["x_tp1"]).view(-1).float()
        values["R1"] = r1_penalty(logits, x_t)
    return {key: value.detach().cpu() for key, value in values.items()}


@pytest.fixture
def cheap_compile(device, monkeypatch):
    """On the CPU, torch.compile only traces (the eager backend): the check's logic in seconds."""
    if device.type == "cpu":
        monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))


@pytest.mark.parametrize("path", list(FAST_TOL))
def test_fast_path_agrees_with_fp32(device, path, cheap_compile):
    """Compiled: the tiny networks (inductor takes a minute for the 32 px ones)."""
    config, G, D = networks(device, "tiny" if path == "compile" else "small")
    inputs = network_inputs(config)
    fast, plain = fast_outputs(G, D, inputs, device, path), fast_outputs(G, D, inputs, device, "fp32")
    for key, value in fast.items():
        assert rel_error(value, plain[key]) < FAST_TOL[path], key


@pytest.mark.parametrize("path", ["bf16", "fp16", "channels_last"])
def test_fast_path_training_step_agrees_with_fp32(device, path):
    """One train_step along ``path`` (fp16: through the GradScaler) and one in fp32, with the same draws."""
    flags = ("--amp", path) if path in performance.AMP_DTYPES else ("--channels_last",)
    _, plain = twin_trainers(device, *training_flags(device))
    _, fast = twin_trainers(device, *training_flags(device), *flags)
    real = torch.rand(4, 3, plain.args.image_size, plain.args.image_size) * 2 - 1
    got, expected = step_both(plain, fast, real.to(device), device)
    assert_losses_agree(got, expected, STEP_TOL[path], path)


def test_compiled_sampler_agrees_with_eager(device, cheap_compile):
    """--compile in test_ddgan.py: inductor with CUDA graphs on a GPU (mode reduce-overhead); tiny networks."""
    config, G, _ = networks(device, "tiny")
    G = G.to(device)
    x_init = torch.randn(4, 3, config["image_size"], config["image_size"]).to(device)
    with Draws().patched() as draws:
        expected = sampling.Sampler(G, config, device).chain(x_init)
    compiled = sampling.Sampler(copy.deepcopy(G), config, device, compile=True)
    for _ in range(2):  # the second call replays the recorded graph
        with Draws(draws.tensors).patched():
            got = compiled.chain(x_init)
    assert rel_error(got.cpu(), expected.cpu()) < FAST_TOL["compile"]
