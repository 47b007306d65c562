"""The DDGAN losses, as the phases of one training iteration.

Each ``accumulate_*`` method draws its own randomness (in the reference's order),
computes one loss and back-propagates it; the caller owns ``zero_grad``, the
``requires_grad`` switches and the optimizer steps (see ``training.trainer.Trainer.train_step``).

Shapes: ``real`` (B, C, H, W) in [-1, 1]; ``t`` (B,) int64 in [0, T); logits (B,).
"""

import torch
import torch.nn.functional as F

from utils import performance
from utils.diffusion import q_sample_pairs, sample_posterior


def r1_penalty(d_out, x):
    """Mean over the batch of ||d sum(d_out) / dx||^2, keeping the graph for backward."""
    (grad,) = torch.autograd.grad(outputs=d_out.sum(), inputs=x, create_graph=True)
    return (grad.reshape(grad.size(0), -1).norm(2, dim=1) ** 2).mean()


class DDGANLoss:
    """Non-saturating GAN losses on diffusion pairs, with (lazy) R1 on the real pairs.

    ``G`` and ``D`` may be DDP-wrapped; ``coeff`` / ``pos_coeff`` are the
    Diffusion_Coefficients / Posterior_Coefficients of the run.
    """

    def __init__(self, G, D, coeff, pos_coeff, num_timesteps, nz, r1_gamma, lazy_reg=None, amp="none",
                 scaler=None):
        self.G, self.D = G, D
        self.coeff, self.pos_coeff = coeff, pos_coeff
        self.num_timesteps, self.nz = num_timesteps, nz
        self.r1_gamma, self.lazy_reg = r1_gamma, lazy_reg
        self.amp = amp
        self.scaler = scaler if scaler is not None else performance.grad_scaler("none", "cpu")

    def backward(self, loss, **kwargs):
        """loss.backward(), through the GradScaler when fp16 is on (a no-op scale otherwise)."""
        self.scaler.scale(loss).backward(**kwargs)

    def run_d(self, x, t, x_tp1, eager=False, amp=None):
        """D's logits (B,) in float32, under ``amp`` (default ``--amp``); ``eager`` bypasses torch.compile
        (R1's double backward needs it)."""
        disc = performance.eager(self.D) if eager else self.D
        with performance.autocast(self.amp if amp is None else amp, x.device):
            return disc(x, t, x_tp1).view(-1).float()

    def r1_due(self, global_step):
        """R1 every step, or with ``lazy_reg`` k only when global_step % k == 0."""
        if self.r1_gamma == 0:
            return False
        return self.lazy_reg is None or global_step % self.lazy_reg == 0

    def draw_pairs(self, real):
        """t ~ U{0..T-1}, then (x_t, x_{t+1}) from the forward process."""
        t = torch.randint(0, self.num_timesteps, (real.size(0),), device=real.device)
        x_t, x_tp1 = q_sample_pairs(self.coeff, real, t)
        return t, x_t, x_tp1

    def fake_pairs(self, x_tp1, t):
        """z ~ N(0, I), x_0' = G(x_{t+1}, t, z), then x_t' ~ q(x_t | x_0', x_{t+1})."""
        latent_z = torch.randn(x_tp1.size(0), self.nz, device=x_tp1.device)
        with performance.autocast(self.amp, x_tp1.device):
            x_0_predict = self.G(x_tp1.detach(), t, latent_z).float()
        return sample_posterior(self.pos_coeff, x_0_predict, x_tp1, t)

    def accumulate_d_real(self, real, global_step):
        """softplus(-D(x_t, t, x_{t+1})).mean(), plus (r1_gamma / 2) R1 when due.

        Returns (errD_real, R1 penalty before the gamma / 2 factor or None, t, x_tp1).
        """
        t, x_t, x_tp1 = self.draw_pairs(real)
        x_t.requires_grad_(True)
        apply_r1 = self.r1_due(global_step)
        # fp16 cannot hold R1's gradient: one per logit, times the GradScaler's scale (2**16 > 65504), would
        # enter D's backward as inf.  With --amp fp16 the real pass of an R1 step runs D in fp32.
        amp = "none" if apply_r1 and self.amp == "fp16" else None
        d_real = self.run_d(x_t, t, x_tp1.detach(), eager=apply_r1, amp=amp)
        err = F.softplus(-d_real).mean()
        self.backward(err, retain_graph=apply_r1)
        penalty = None
        if apply_r1:
            penalty = r1_penalty(d_real, x_t)
            self.backward(self.r1_gamma / 2 * penalty)
        return err.detach(), None if penalty is None else penalty.detach(), t, x_tp1

    def accumulate_d_fake(self, x_tp1, t):
        """softplus(D(x_t', t, x_{t+1})).mean() on the pair of the real phase.

        G runs without a graph: D's gradient is the reference's, without back-propagating
        into G only to throw that away at the G step's zero_grad.
        """
        with torch.no_grad():
            x_pos_sample = self.fake_pairs(x_tp1, t)
        err = F.softplus(self.run_d(x_pos_sample, t, x_tp1.detach())).mean()
        self.backward(err)
        return err.detach()

    def accumulate_g(self, real):
        """Fresh t, pairs and z from the same real batch; softplus(-D(x_t', t, x_{t+1})).mean()."""
        t, _, x_tp1 = self.draw_pairs(real)
        x_pos_sample = self.fake_pairs(x_tp1, t)
        err = F.softplus(-self.run_d(x_pos_sample, t, x_tp1.detach())).mean()
        self.backward(err)
        return err.detach(), x_pos_sample.detach()
