"""Time-conditioned discriminators D(x_t, t, x_{t+1}) -> logit.

The input is cat(x_t, x_{t+1}) along channels (``nc`` = 2 x image channels).  Small: four
blocks (the first keeps the resolution) for 32 px; large: six downsampling blocks for
256 px.  Both end with a minibatch-stddev channel, a 3x3 conv, a spatial sum and a
dense layer.  Keys are the reference's (``conv1.conv1.0.weight``...).
"""

import numpy as np
import torch
import torch.nn as nn

from .. import legacy
from . import up_or_down_sampling as updown
from .layers import fan_out_conv2d as conv2d
from .layers import fan_out_dense as dense
from .layers import get_timestep_embedding


class TimestepEmbedding(nn.Module):
    """Sinusoidal embedding of the step, dense, act, dense: (B,) -> (B, output_dim)."""

    def __init__(self, embedding_dim, hidden_dim, output_dim, act=None):
        super().__init__()
        act = act or nn.LeakyReLU(0.2)
        self.embedding_dim = embedding_dim
        self.main = nn.Sequential(dense(embedding_dim, hidden_dim), act, dense(hidden_dim, output_dim))

    def forward(self, t):
        return self.main(get_timestep_embedding(t, self.embedding_dim))


class DownConvBlock(nn.Module):
    """act, 3x3 conv, + dense(t_emb), act, [FIR down], 3x3 conv; 1x1 skip; sum / sqrt(2)."""

    def __init__(self, in_channel, out_channel, t_emb_dim=128, downsample=False, act=None, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        act = act or nn.LeakyReLU(0.2)
        self.conv1 = nn.Sequential(conv2d(in_channel, out_channel, 3, padding=1))
        self.conv2 = nn.Sequential(conv2d(out_channel, out_channel, 3, padding=1, init_scale=0.0))
        self.dense_t1 = dense(t_emb_dim, out_channel)
        self.skip = nn.Sequential(conv2d(in_channel, out_channel, 1, padding=0, bias=False))
        if downsample:
            updown.register_fir(self, fir_kernel)
        self.act, self.downsample = act, downsample

    def forward(self, x, t_emb):
        out = self.conv1(self.act(x)) + self.dense_t1(t_emb)[..., None, None]
        out = self.act(out)
        if self.downsample:
            out = updown.downsample_2d(out, self.fir_filter, factor=2)
            x = updown.downsample_2d(x, self.fir_filter, factor=2)
        return (self.conv2(out) + self.skip(x)) / np.sqrt(2)


STDDEV_GROUP = 4  # samples per minibatch-stddev group: a batch must be below it or a multiple of it


class _Discriminator(nn.Module):
    """Shared trunk: time embedding, 1x1 start conv, down blocks, minibatch stddev, head."""

    stddev_group = STDDEV_GROUP
    stddev_feat = 1

    def __init__(self, nc, ngf, t_emb_dim, act, widths, downsample, final_init_scale):
        super().__init__()
        act = act or nn.LeakyReLU(0.2)
        self.act = act
        self.t_embed = TimestepEmbedding(t_emb_dim, t_emb_dim, t_emb_dim, act=act)
        self.start_conv = conv2d(nc, ngf * 2, 1, padding=0)
        self.num_blocks = len(widths) - 1
        for i in range(self.num_blocks):
            block = DownConvBlock(ngf * widths[i], ngf * widths[i + 1], t_emb_dim=t_emb_dim,
                                  downsample=downsample[i], act=act)
            setattr(self, f"conv{i + 1}", block)
        self.final_conv = conv2d(ngf * widths[-1] + 1, ngf * widths[-1], 3, padding=1,
                                 init_scale=final_init_scale)
        self.end_linear = dense(ngf * widths[-1], 1)
        self._register_load_state_dict_pre_hook(legacy.ddp_prefix_load_hook, with_module=True)

    def minibatch_stddev(self, x):
        """Append the mean over features of the std over groups of ``stddev_group`` samples."""
        batch, channel, height, width = x.shape
        group = min(batch, self.stddev_group)
        stddev = x.view(group, -1, self.stddev_feat, channel // self.stddev_feat, height, width)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)
        return torch.cat([x, stddev.repeat(group, 1, height, width)], 1)

    def forward(self, x, t, x_t):
        """x: (B, C, H, W) x_t; t: (B,) steps; x_t: (B, C, H, W) x_{t+1} -> (B, 1) logits."""
        t_embed = self.act(self.t_embed(t))
        h = self.start_conv(torch.cat((x, x_t), dim=1))
        for i in range(self.num_blocks):
            h = getattr(self, f"conv{i + 1}")(h, t_embed)
        h = self.act(self.final_conv(self.minibatch_stddev(h)))
        return self.end_linear(h.view(h.shape[0], h.shape[1], -1).sum(2))


class Discriminator_small(_Discriminator):
    """32 px discriminator: widths 2, 2, 4, 8, 8 x ngf; the first block keeps the resolution."""

    halvings = 3  # FIR downsamplings: images of at least 2**3 px

    def __init__(self, nc=3, ngf=64, t_emb_dim=128, act=None):
        """``act`` defaults to LeakyReLU(0.2)."""
        super().__init__(nc, ngf, t_emb_dim, act, widths=(2, 2, 4, 8, 8), downsample=(False, True, True, True),
                         final_init_scale=0.0)


class Discriminator_large(_Discriminator):
    """256 px discriminator: six downsampling blocks, widths 2, 4, 8, 8, 8, 8, 8 x ngf."""

    halvings = 6

    def __init__(self, nc=1, ngf=32, t_emb_dim=128, act=None):
        """``act`` defaults to LeakyReLU(0.2)."""
        super().__init__(nc, ngf, t_emb_dim, act, widths=(2, 4, 8, 8, 8, 8, 8), downsample=(True,) * 6,
                         final_init_scale=1.0)  # the reference's large D: default scale, not zero


SMALL_MAX_SIZE = 64  # Discriminator_small up to 64 px, Discriminator_large above


def discriminator_class(image_size):
    """The discriminator of a run at ``image_size`` px (as the reference picks it by data set)."""
    return Discriminator_small if image_size <= SMALL_MAX_SIZE else Discriminator_large


def check_image_size(image_size):
    """ValueError with the fix when the discriminator of ``image_size`` cannot halve it often enough."""
    halvings = discriminator_class(image_size).halvings
    if image_size < 2**halvings:
        raise ValueError(f"--image_size {image_size} is too small for the discriminator, which halves "
                         f"the image {halvings} times: use --image_size {2**halvings} or more")


def check_batch_size(batch_size):
    """ValueError with the fix when a batch cannot be split into minibatch-stddev groups."""
    if batch_size % min(batch_size, STDDEV_GROUP):
        raise ValueError(f"--batch_size {batch_size} (per process) must be below {STDDEV_GROUP} or a multiple of "
                         f"{STDDEV_GROUP}, the discriminator's minibatch-stddev group: use e.g. "
                         f"{batch_size - batch_size % STDDEV_GROUP}")
