"""The training step: R1 against the reference, lazy R1, the reference's loop, the lr schedule."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from score_sde.models import build_discriminator
from score_sde.models.discriminator import Discriminator_large, Discriminator_small
from tests.conftest import make_trainer, rel_error, tiny_args
from training import trainer as training
from training.loss import r1_penalty
from utils.diffusion import q_sample_pairs, sample_posterior
from utils.distributed import Context
from utils.flags import model_config

DISCRIMINATORS = {"discriminator_small": Discriminator_small, "discriminator_large": Discriminator_large}


def _reference_discriminator(entry, kind, dtype=torch.float32):
    netD = DISCRIMINATORS[kind](**entry["args"], act=nn.LeakyReLU(0.2))
    netD.load_state_dict(entry["state_dict"])
    return netD.to(dtype)


@pytest.mark.parametrize("kind", DISCRIMINATORS)
def test_r1_penalty_matches_the_reference(reference, kind):
    entry = reference[kind]
    netD = _reference_discriminator(entry, kind)
    x = entry["x"].clone().requires_grad_(True)
    out = netD(x, entry["t"], entry["x_tp1"]).view(-1)
    assert rel_error(out, entry["out"].view(-1)) < 1e-4
    assert rel_error(r1_penalty(out, x), entry["r1_penalty"]) < 1e-4


def test_r1_gradient_matches_finite_differences(reference):
    """create_graph: the penalty's gradient w.r.t. D's weights is the derivative of its value."""
    entry = reference["discriminator_small"]
    netD = _reference_discriminator(entry, "discriminator_small", torch.float64)
    # the sinusoidal time embedding is float32 by construction: feed its dense layers in float64
    netD.t_embed.main.register_forward_pre_hook(lambda module, inputs: (inputs[0].double(),))
    x, t, x_tp1 = entry["x"][:2].double(), entry["t"][:2], entry["x_tp1"][:2].double()

    def penalty():
        inp = x.clone().requires_grad_(True)
        return r1_penalty(netD(inp, t, x_tp1).view(-1), inp)

    def shifted(param, index, delta):
        with torch.no_grad():
            param[index] += delta
        value = penalty().item()
        with torch.no_grad():
            param[index] -= delta
        return value

    penalty().backward()
    for name in ("final_conv.weight", "conv2.conv1.0.weight", "start_conv.weight"):
        param = dict(netD.named_parameters())[name]
        index = (0,) * param.dim()
        numeric = (shifted(param, index, 1e-6) - shifted(param, index, -1e-6)) / 2e-6
        assert param.grad[index].item() == pytest.approx(numeric, rel=1e-4, abs=1e-10), name


def _loss(**flags):
    extra = [item for key, value in flags.items() for item in (f"--{key}", value)]
    return make_trainer(Context(), tiny_args(*extra)).loss


def test_lazy_r1_fires_exactly_every_k_steps():
    loss = _loss(lazy_reg=3)
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    fired = [loss.accumulate_d_real(real, step)[1] is not None for step in range(8)]
    assert fired == [step % 3 == 0 for step in range(8)]
    assert all(_loss().r1_due(step) for step in range(5))
    assert not any(_loss(r1_gamma=0).r1_due(step) for step in range(5))


def test_r1_adds_gamma_half_of_its_gradient_without_rescaling_by_k():
    loss = _loss(lazy_reg=4, r1_gamma=3.0)
    netD = loss.D
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    torch.manual_seed(5)
    netD.zero_grad()
    err, penalty, _, _ = loss.accumulate_d_real(real, 4)
    with_r1 = [p.grad.clone() for p in netD.parameters()]
    torch.manual_seed(5)
    netD.zero_grad()
    loss.accumulate_d_real(real, 5)
    without = [p.grad.clone() for p in netD.parameters()]
    torch.manual_seed(5)
    t, x_t, x_tp1 = loss.draw_pairs(real)
    x_t.requires_grad_(True)
    params = list(netD.parameters())
    penalty_again = r1_penalty(netD(x_t, t, x_tp1).view(-1), x_t)
    grads = torch.autograd.grad(1.5 * penalty_again, params, allow_unused=True)
    for a, b, g, p in zip(with_r1, without, grads, params, strict=True):
        torch.testing.assert_close(a - b, torch.zeros_like(p) if g is None else g, rtol=1e-3, atol=1e-7)
    assert penalty > 0 and err > 0


def _reference_iteration(netG, netD, optG, optD, coeff, pos_coeff, real, args, global_step, ema):
    """One iteration written out as the reference's loop does it (G has a graph in D's fake phase)."""
    for p in netD.parameters():
        p.requires_grad = True
    netD.zero_grad()
    t = torch.randint(0, args.num_timesteps, (real.size(0),))
    x_t, x_tp1 = q_sample_pairs(coeff, real, t)
    x_t.requires_grad = True
    D_real = netD(x_t, t, x_tp1.detach()).view(-1)
    F.softplus(-D_real).mean().backward(retain_graph=True)
    if args.lazy_reg is None or global_step % args.lazy_reg == 0:
        grad_real = torch.autograd.grad(outputs=D_real.sum(), inputs=x_t, create_graph=True)[0]
        penalty = (grad_real.view(grad_real.size(0), -1).norm(2, dim=1) ** 2).mean()
        (args.r1_gamma / 2 * penalty).backward()
    latent_z = torch.randn(real.size(0), args.nz)
    x_pos = sample_posterior(pos_coeff, netG(x_tp1.detach(), t, latent_z), x_tp1, t)
    F.softplus(netD(x_pos, t, x_tp1.detach()).view(-1)).mean().backward()
    optD.step()
    for p in netD.parameters():
        p.requires_grad = False
    netG.zero_grad()
    t = torch.randint(0, args.num_timesteps, (real.size(0),))
    x_t, x_tp1 = q_sample_pairs(coeff, real, t)
    latent_z = torch.randn(real.size(0), args.nz)
    x_pos = sample_posterior(pos_coeff, netG(x_tp1.detach(), t, latent_z), x_tp1, t)
    F.softplus(-netD(x_pos, t, x_tp1.detach()).view(-1)).mean().backward()
    optG.step()
    for name, p in netG.named_parameters():
        ema.setdefault(name, p.detach().clone())
        ema[name].mul_(args.ema_decay).add_(p.detach(), alpha=1 - args.ema_decay)


def test_step_gives_the_reference_loops_numbers():
    """Same seed, same weights: our phases (G without a graph in D's fake phase) and the
    reference's loop draw the same numbers in the same order and end on the same weights."""
    args = tiny_args("--use_ema", "--ema_decay", "0.9", "--lazy_reg", "2", "--r1_gamma", "0.5")
    ours, theirs = make_trainer(Context(), args), make_trainer(Context(), args)
    theirs.generator.load_state_dict(ours.generator.state_dict())
    theirs.netD.load_state_dict(ours.netD.state_dict())
    reals = torch.rand(3, 4, 3, 16, 16) * 2 - 1
    torch.manual_seed(11)
    for real in reals:
        ours.train_step(real)
    torch.manual_seed(11)
    ema = {}
    for step, real in enumerate(reals):
        _reference_iteration(theirs.netG, theirs.netD, theirs.optG, theirs.optD, theirs.coeff,
                             theirs.pos_coeff, real, args, step, ema)
    for a, b in ((ours.netG, theirs.netG), (ours.netD, theirs.netD)):
        for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
            assert torch.equal(p, q), name
    assert all(torch.equal(ours.ema.shadow[name], ema[name]) for name in ema)
    assert ours.global_step == 3


def test_learning_rates_follow_the_reference_cosine_per_epoch(tmp_path):
    """The reference steps its schedulers at the end of each epoch: epoch e trains at cos(e)."""
    args = tiny_args("--num_epoch", "4", "--save_dir", tmp_path, "--lr_g", "2e-4", "--lr_d", "1e-4")
    trainer = make_trainer(Context(), args)
    (tmp_path / "dd_gan" / args.dataset / args.exp).mkdir(parents=True)
    seen = []
    for epoch in range(args.num_epoch + 1):
        seen.append((trainer.optG.param_groups[0]["lr"], trainer.optD.param_groups[0]["lr"]))
        trainer.end_epoch(epoch)

    def cosine(base, epoch):
        low = training.LR_MIN
        return low + (base - low) * (1 + math.cos(math.pi * epoch / args.num_epoch)) / 2

    expected = [(cosine(2e-4, e), cosine(1e-4, e)) for e in range(args.num_epoch + 1)]
    assert [lr for pair in seen for lr in pair] == pytest.approx([lr for pair in expected for lr in pair])
    constant = make_trainer(Context(), tiny_args("--no_lr_decay", "--save_dir", tmp_path))
    constant.end_epoch(0)
    assert constant.optG.param_groups[0]["lr"] == 1.5e-4


@pytest.mark.parametrize("size,kind", [(16, Discriminator_small), (64, Discriminator_small),
                                       (128, Discriminator_large), (256, Discriminator_large)])
def test_discriminator_follows_the_image_size(size, kind):
    args = tiny_args("--image_size", size, "--ch_mult", "1", "1", "--no-use_ema")
    assert type(build_discriminator(model_config(args))) is kind
