"""Building blocks of the NCSN++ generator: initialisers, embeddings, AdaGN, attention,
resampling layers and the residual blocks.

Parameter names inside each block (``GroupNorm_0``, ``Conv_0``, ``Dense_0``, ``NIN_0``...)
are the reference's, so a block's state dict is the reference's block state dict.
Conditioning is explicit: ``block(x, temb, zemb)``.
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import up_or_down_sampling as updown

# ----------------------------------------------------------------------------- init

def variance_scaling(scale, mode, distribution, in_axis=1, out_axis=0):
    """JAX-style variance-scaling initialiser (DDPM's ``default_init`` uses fan_avg, uniform)."""

    def init(shape, dtype=torch.float32, device="cpu"):
        receptive = np.prod(shape) / shape[in_axis] / shape[out_axis]
        fan_in, fan_out = shape[in_axis] * receptive, shape[out_axis] * receptive
        denominator = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / denominator
        if distribution == "normal":
            return torch.randn(*shape, dtype=dtype, device=device) * np.sqrt(variance)
        if distribution == "uniform":
            return (torch.rand(*shape, dtype=dtype, device=device) * 2.0 - 1.0) * np.sqrt(3 * variance)
        raise ValueError(f"invalid distribution {distribution!r}")

    return init


def default_init(scale=1.0):
    """DDPM's initialiser; a zero scale becomes 1e-10 (zero-scale layers start near zero)."""
    return variance_scaling(1e-10 if scale == 0 else scale, "fan_avg", "uniform")


def dense(in_features, out_features, init_scale=1.0):
    """nn.Linear with DDPM initialisation and zero bias."""
    layer = nn.Linear(in_features, out_features)
    layer.weight.data = default_init(init_scale)(layer.weight.shape)
    nn.init.zeros_(layer.bias)
    return layer


def conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=True, init_scale=1.0):
    """nn.Conv2d with DDPM initialisation and zero bias."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=bias)
    conv.weight.data = default_init(init_scale)(conv.weight.shape)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def fan_out_uniform_(weight, scale=1.0):
    """The initialiser of the reference's ``dense_layer`` module, in place: U(-b, b) with
    b = sqrt(3 scale / max(1, fan_out)), fan_out = out x receptive field; scale 0 becomes 1e-10.

    The reference asks for fan_avg here, but its fan helper returns fan_out for that mode; this
    is the initialisation its (and the paper's) runs used, so it is kept as it was.
    """
    fan_out = weight.shape[0] * math.prod(weight.shape[2:])
    bound = math.sqrt(3.0 * (1e-10 if scale == 0 else scale) / max(1.0, fan_out))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def fan_out_dense(in_features, out_features, init_scale=1.0):
    """nn.Linear initialised as the reference's ``dense_layer.dense`` (AdaGN styles, z mapping, D)."""
    layer = nn.Linear(in_features, out_features)
    fan_out_uniform_(layer.weight, init_scale)
    nn.init.zeros_(layer.bias)
    return layer


def fan_out_conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=True, init_scale=1.0):
    """nn.Conv2d initialised as the reference's ``dense_layer.conv2d`` (the discriminators)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding, bias=bias)
    fan_out_uniform_(conv.weight, init_scale)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def conv3x3(in_ch, out_ch, stride=1, padding=1, bias=True, init_scale=1.0):
    return conv2d(in_ch, out_ch, 3, stride, padding, bias, init_scale)


def conv1x1(in_ch, out_ch, stride=1, padding=0, bias=True, init_scale=1.0):
    return conv2d(in_ch, out_ch, 1, stride, padding, bias, init_scale)


def group_norm(channels, affine=True):
    """GroupNorm with min(C // 4, 32) groups and eps 1e-6."""
    return nn.GroupNorm(min(channels // 4, 32), channels, eps=1e-6, affine=affine)


# ----------------------------------------------------------------------------- embeddings

def get_timestep_embedding(timesteps, embedding_dim, max_positions=10000):
    """Sinusoidal embedding of integer steps: (B,) -> (B, embedding_dim), sin then cos."""
    assert timesteps.dim() == 1
    half_dim = embedding_dim // 2
    scale = math.log(max_positions) / (half_dim - 1)
    freqs = torch.exp(torch.arange(half_dim, dtype=torch.float32, device=timesteps.device) * -scale)
    emb = timesteps.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    return F.pad(emb, (0, 1)) if embedding_dim % 2 == 1 else emb


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a scalar: (B,) -> (B, 2 * embedding_size), sin then cos."""

    def __init__(self, embedding_size=256, scale=1.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def forward(self, x):
        x_proj = x[:, None] * self.W[None, :] * 2 * np.pi
        return torch.cat([torch.sin(x_proj), torch.cos(x_proj)], dim=-1)


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square."""

    def forward(self, x):
        return x / torch.sqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


# ----------------------------------------------------------------------------- normalisation

class AdaptiveGroupNorm(nn.Module):
    """AdaGN: affine-free GroupNorm scaled and shifted by a dense layer of the z embedding.

    ``style`` maps zemb (B, style_dim) to (gamma, beta), each (B, C); gamma's bias starts at 1.
    """

    def __init__(self, num_groups, in_channel, style_dim):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups, in_channel, affine=False, eps=1e-6)
        self.style = fan_out_dense(style_dim, in_channel * 2)
        self.style.bias.data[:in_channel] = 1
        self.style.bias.data[in_channel:] = 0

    def forward(self, x, style):
        gamma, beta = self.style(style)[:, :, None, None].chunk(2, 1)
        return gamma * self.norm(x) + beta


def adaptive_group_norm(channels, zemb_dim):
    return AdaptiveGroupNorm(min(channels // 4, 32), channels, zemb_dim)


# ----------------------------------------------------------------------------- attention

class NIN(nn.Module):
    """A 1x1 "network in network" layer: y = x @ W + b over channels; W is (in, out)."""

    def __init__(self, in_dim, num_units, init_scale=0.1):
        super().__init__()
        self.W = nn.Parameter(default_init(scale=init_scale)((in_dim, num_units)))
        self.b = nn.Parameter(torch.zeros(num_units))

    def forward(self, x):
        y = torch.einsum("bchw,cd->bdhw", x, self.W)
        return y + self.b[None, :, None, None]


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, with a residual connection."""

    def __init__(self, channels, skip_rescale=False, init_scale=0.0):
        super().__init__()
        self.GroupNorm_0 = group_norm(channels)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.GroupNorm_0(x)
        # (B, C, H, W) -> (B, 1, HW, C) tokens for scaled_dot_product_attention (scale C^-1/2).
        q, k, v = (nin(h).reshape(B, 1, C, H * W).transpose(-1, -2) for nin in (self.NIN_0, self.NIN_1, self.NIN_2))
        h = F.scaled_dot_product_attention(q, k, v)
        h = self.NIN_3(h.transpose(-1, -2).reshape(B, C, H, W))
        return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h


# ----------------------------------------------------------------------------- resampling

class Upsample(nn.Module):
    """2x upsampling: FIR (optionally fused with a 3x3 conv) or nearest (+ optional 3x3 conv)."""

    def __init__(self, in_ch, out_ch=None, with_conv=False, fir=False, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        out_ch = out_ch or in_ch
        if with_conv and fir:
            self.Conv2d_0 = updown.Conv2d(in_ch, out_ch, kernel=3, up=True, resample_kernel=fir_kernel,
                                       kernel_init=default_init())
        elif with_conv:
            self.Conv_0 = conv3x3(in_ch, out_ch)
        elif fir:
            updown.register_fir(self, fir_kernel)
        self.fir, self.with_conv = fir, with_conv

    def forward(self, x):
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else updown.upsample_2d(x, self.fir_filter, factor=2)
        h = updown.naive_upsample_2d(x, factor=2)
        return self.Conv_0(h) if self.with_conv else h


class Downsample(nn.Module):
    """2x downsampling: FIR (optionally fused with a 3x3 conv) or strided conv / average pool."""

    def __init__(self, in_ch, out_ch=None, with_conv=False, fir=False, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        out_ch = out_ch or in_ch
        if with_conv and fir:
            self.Conv2d_0 = updown.Conv2d(in_ch, out_ch, kernel=3, down=True, resample_kernel=fir_kernel,
                                       kernel_init=default_init())
        elif with_conv:
            self.Conv_0 = conv3x3(in_ch, out_ch, stride=2, padding=0)
        elif fir:
            updown.register_fir(self, fir_kernel)
        self.fir, self.with_conv = fir, with_conv

    def forward(self, x):
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else updown.downsample_2d(x, self.fir_filter, factor=2)
        if self.with_conv:
            return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, 2, stride=2)


class Combine(nn.Module):
    """Merge the input pyramid into the main path: 1x1 conv of the pyramid, then sum or concat."""

    def __init__(self, dim1, dim2, method="cat"):
        super().__init__()
        self.Conv_0 = conv1x1(dim1, dim2)
        self.method = method

    def forward(self, x, y):
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y


# ----------------------------------------------------------------------------- residual blocks

class ResnetBlockBigGAN(nn.Module):
    """BigGAN residual block with AdaGN, optional FIR/naive up- or downsampling inside.

    ``one_adagn`` keeps AdaGN only on the first norm (resblock_type biggan_oneadagn).
    forward(x (B, in, H, W), temb (B, temb_dim) | None, zemb (B, zemb_dim)) -> (B, out, H', W').
    """

    def __init__(self, act, in_ch, out_ch=None, temb_dim=None, zemb_dim=None, up=False, down=False,
                 dropout=0.1, fir=False, fir_kernel=(1, 3, 3, 1), skip_rescale=True, init_scale=0.0,
                 one_adagn=False):
        super().__init__()
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = adaptive_group_norm(in_ch, zemb_dim)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = dense(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch) if one_adagn else adaptive_group_norm(out_ch, zemb_dim)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        if in_ch != out_ch or up or down:
            self.Conv_2 = conv1x1(in_ch, out_ch)
        if fir and (up or down):
            updown.register_fir(self, fir_kernel)
        self.act, self.up, self.down, self.fir = act, up, down, fir
        self.skip_rescale, self.one_adagn = skip_rescale, one_adagn

    def _resample(self, x):
        if self.up:
            return updown.upsample_2d(x, self.fir_filter) if self.fir else updown.naive_upsample_2d(x)
        if self.down:
            return updown.downsample_2d(x, self.fir_filter) if self.fir else updown.naive_downsample_2d(x)
        return x

    def forward(self, x, temb=None, zemb=None):
        h = self.act(self.GroupNorm_0(x, zemb))
        h, x = self._resample(h), self._resample(x)
        h = self.Conv_0(h)
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.GroupNorm_1(h) if self.one_adagn else self.GroupNorm_1(h, zemb)
        h = self.Conv_1(self.Dropout_0(self.act(h)))
        if hasattr(self, "Conv_2"):
            x = self.Conv_2(x)
        return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h


class ResnetBlockDDPM(nn.Module):
    """DDPM residual block with AdaGN; a NIN (or 3x3 conv) shortcut when widths differ."""

    def __init__(self, act, in_ch, out_ch=None, temb_dim=None, zemb_dim=None, conv_shortcut=False,
                 dropout=0.1, skip_rescale=False, init_scale=0.0):
        super().__init__()
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = adaptive_group_norm(in_ch, zemb_dim)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = dense(temb_dim, out_ch)
        self.GroupNorm_1 = adaptive_group_norm(out_ch, zemb_dim)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        if in_ch != out_ch:
            if conv_shortcut:
                self.Conv_2 = conv3x3(in_ch, out_ch)
            else:
                self.NIN_0 = NIN(in_ch, out_ch)
        self.act, self.skip_rescale = act, skip_rescale

    def forward(self, x, temb=None, zemb=None):
        h = self.Conv_0(self.act(self.GroupNorm_0(x, zemb)))
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h, zemb))))
        if hasattr(self, "Conv_2"):
            x = self.Conv_2(x)
        elif hasattr(self, "NIN_0"):
            x = self.NIN_0(x)
        return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h
