"""The DDGAN diffusion: time grid, noise schedule, training pairs, posterior, sampling.

One module, used by training and by sampling.  The numerics follow the reference
exactly: the grid and variances in float64, betas cast to float32, products and
square roots in float32, the posterior log-variance clamped at 1e-20.

Shapes: images ``x`` are (B, C, H, W); time steps ``t`` are int64 (B,) in [0, T).
"""

import numpy as np
import torch

EPS_SMALL = 1e-3


def var_func_vp(t, beta_min, beta_max):
    """VP-SDE marginal variance 1 - exp(-0.5 t^2 (beta_max - beta_min) - t beta_min)."""
    log_mean_coeff = -0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min
    return 1.0 - torch.exp(2.0 * log_mean_coeff)


def var_func_geometric(t, beta_min, beta_max):
    """Geometric variance beta_min (beta_max / beta_min)^t."""
    return beta_min * ((beta_max / beta_min) ** t)


def extract(values, t, shape):
    """values[t] reshaped to broadcast over a batch of the given shape: (B, 1, 1, ...)."""
    out = torch.gather(values, 0, t)
    return out.reshape(shape[0], *([1] * (len(shape) - 1)))


def get_time_schedule(args, device):
    """t_i = eps + (1 - eps) i / T for i = 0..T, float64, shape (T + 1,)."""
    steps = torch.from_numpy(np.arange(args.num_timesteps + 1, dtype=np.float64) / args.num_timesteps)
    return (steps * (1.0 - EPS_SMALL) + EPS_SMALL).to(device)


def get_sigma_schedule(args, device):
    """(sigmas, a_s, betas), each (T + 1,) float32, with beta_0 = 1e-8 in front."""
    t = get_time_schedule(args, "cpu")
    var_func = var_func_geometric if args.use_geometric else var_func_vp
    alpha_bars = 1.0 - var_func(t, args.beta_min, args.beta_max)
    betas = 1 - alpha_bars[1:] / alpha_bars[:-1]
    betas = torch.cat((torch.tensor([1e-8], dtype=betas.dtype), betas)).to(device, torch.float32)
    return betas**0.5, torch.sqrt(1 - betas), betas


class Diffusion_Coefficients:
    """Forward-process tables: ``a_s``, ``sigmas`` per step and their cumulative forms."""

    def __init__(self, args, device):
        self.sigmas, self.a_s, _ = get_sigma_schedule(args, device=device)
        self.a_s_cum = torch.cumprod(self.a_s.cpu(), 0).to(device)
        self.sigmas_cum = torch.sqrt(1 - self.a_s_cum**2)
        self.a_s_prev = self.a_s.clone()
        self.a_s_prev[-1] = 1


def q_sample(coeff, x_start, t, *, noise=None):
    """x_t = a_cum[t] x_0 + sigma_cum[t] noise."""
    if noise is None:
        noise = torch.randn_like(x_start)
    return extract(coeff.a_s_cum, t, x_start.shape) * x_start + extract(coeff.sigmas_cum, t, x_start.shape) * noise


def q_sample_pairs(coeff, x_start, t):
    """Training pair (x_t, x_{t+1}).  Draw order as the reference: e2 (step t -> t+1), then e1."""
    noise = torch.randn_like(x_start)
    x_t = q_sample(coeff, x_start, t)
    x_t_plus_one = extract(coeff.a_s, t + 1, x_start.shape) * x_t + extract(coeff.sigmas, t + 1, x_start.shape) * noise
    return x_t, x_t_plus_one


class Posterior_Coefficients:
    """Tables of q(x_t | x_0, x_{t+1}), indexed by t in [0, T)."""

    def __init__(self, args, device):
        _, _, betas = get_sigma_schedule(args, device=device)
        self.betas = betas[1:]
        self.alphas = 1 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self.alphas_cumprod_prev = torch.cat(
            (torch.tensor([1.0], dtype=torch.float32, device=device), self.alphas_cumprod[:-1]), 0)
        self.posterior_variance = self.betas * (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod)
        self.sqrt_alphas_cumprod = torch.sqrt(self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = torch.rsqrt(self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = torch.sqrt(1 / self.alphas_cumprod - 1)
        self.posterior_mean_coef1 = self.betas * torch.sqrt(self.alphas_cumprod_prev) / (1 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (
            (1 - self.alphas_cumprod_prev) * torch.sqrt(self.alphas) / (1 - self.alphas_cumprod))
        self.posterior_log_variance_clipped = torch.log(self.posterior_variance.clamp(min=1e-20))


def q_posterior(coeff, x_0, x_t, t):
    """Mean, variance and clipped log-variance of q(x_t | x_0, x_{t+1}); ``x_t`` is x_{t+1}."""
    mean = (extract(coeff.posterior_mean_coef1, t, x_t.shape) * x_0
            + extract(coeff.posterior_mean_coef2, t, x_t.shape) * x_t)
    var = extract(coeff.posterior_variance, t, x_t.shape)
    log_var = extract(coeff.posterior_log_variance_clipped, t, x_t.shape)
    return mean, var, log_var


def sample_posterior(coefficients, x_0, x_t, t):
    """One draw from q(x_t | x_0, x_{t+1}); noiseless where t == 0."""
    mean, _, log_var = q_posterior(coefficients, x_0, x_t, t)
    noise = torch.randn_like(x_t)
    nonzero_mask = 1 - (t == 0).type(torch.float32)
    return mean + nonzero_mask[:, None, None, None] * torch.exp(0.5 * log_var) * noise


def sample_from_model(coefficients, generator, n_time, x_init, T, opt):
    """The reverse chain from x_init: for i = n_time-1..0, z, x0' = G(x, i, z), posterior draw.

    ``T`` is unused (kept for the reference's signature); ``opt.nz`` is the latent size.
    """
    x = x_init
    with torch.no_grad():
        for i in reversed(range(n_time)):
            t = torch.full((x.size(0),), i, dtype=torch.int64, device=x.device)
            latent_z = torch.randn(x.size(0), opt.nz, device=x.device)
            x_0 = generator(x, t, latent_z)
            x = sample_posterior(coefficients, x_0, x, t).detach()
    return x
