"""The DDGAN generator: an NCSN++ U-Net whose group norms are conditioned on z (AdaGN).

G(x_{t+1}, t, z) predicts x_0.  Layout, with ``L = len(ch_mult)`` levels:

    z_transform                     PixelNorm, dense, SiLU, n_mlp x (dense, SiLU)
    fourier / temb_dense0, temb_dense1   time embedding (B,) -> (B, 4 nf)
    conv_in                         3x3 conv to nf channels
    down[i].res[j], down[i].attn[j] residual blocks (+ attention at attn_resolutions)
    down[i].downsample              resblock(down=True) (or Downsample for ddpm blocks)
    down[i].pyramid                 input pyramid: FIR-downsampling conv (residual) or Combine
    mid.res0, mid.attn, mid.res1
    up[i].res[j], up[i].attn        num_res_blocks + 1 blocks eating the skip connections
    up[i].pyramid_*                 output pyramid (progressive output_skip / residual)
    up[i].upsample                  resblock(up=True) (or Upsample for ddpm blocks)
    out_norm, out_conv              GroupNorm, SiLU, 3x3 conv, tanh

The reference kept all of these in one flat ``all_modules`` list walked by a counter;
``reference_names()`` lists our module paths in that list's order, which is all that
``score_sde.legacy`` needs to convert its checkpoints both ways.
"""

import functools

import numpy as np
import torch
import torch.nn as nn

from .. import legacy
from . import layers


class _Level(nn.Module):
    """Container for the blocks of one resolution level (attributes set by NCSNpp)."""


class NCSNpp(nn.Module):
    """NCSN++ with AdaGN; ``config`` is the argparse namespace of the model flags."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.act = nn.SiLU()
        self.nf = config.num_channels_dae
        self.ch_mult = list(config.ch_mult)
        self.num_res_blocks = config.num_res_blocks
        self.attn_resolutions = list(config.attn_resolutions)
        self.num_resolutions = len(self.ch_mult)
        self.all_resolutions = [config.image_size // (2**i) for i in range(self.num_resolutions)]
        self.conditional = config.conditional
        self.skip_rescale = config.skip_rescale
        self.resblock_type = config.resblock_type.lower()
        self.progressive = config.progressive.lower()
        self.progressive_input = config.progressive_input.lower()
        self.embedding_type = config.embedding_type.lower()
        self.not_use_tanh = config.not_use_tanh
        self._reference_order = []
        # Built in the reference's order: its flat module list and its draws from the RNG.
        self._build_time_embedding(config)
        self._build_blocks(config)
        hs_c = self._build_down(config)
        self._build_mid(hs_c[-1])
        in_ch = self._build_up(config, hs_c)
        if self.progressive != "output_skip":
            self._register("out_norm", layers.group_norm(in_ch))
            self._register("out_conv", layers.conv3x3(in_ch, config.num_channels, init_scale=0.0))
        self.z_transform = self._build_z_mapping(config)
        self._register_load_state_dict_pre_hook(legacy.generator_load_hook, with_module=True)

    # ------------------------------------------------------------------ construction helpers

    def _build_blocks(self, config):
        """Block factories of the options (self._resblock, ._attn, ._upsample, ._downsample) and the
        parameter-free pyramid resamplers."""
        fir, fir_kernel = config.fir, tuple(config.fir_kernel)
        self._resblock = self._resblock_factory(config, self.act)
        self._attn = functools.partial(layers.AttnBlock, init_scale=0.0, skip_rescale=self.skip_rescale)
        self._upsample = functools.partial(layers.Upsample, with_conv=config.resamp_with_conv, fir=fir,
                                           fir_kernel=fir_kernel)
        self._downsample = functools.partial(layers.Downsample, with_conv=config.resamp_with_conv, fir=fir,
                                             fir_kernel=fir_kernel)
        if self.progressive == "output_skip":
            self.pyramid_upsample = layers.Upsample(in_ch=None, fir=fir, fir_kernel=fir_kernel, with_conv=False)
        if self.progressive_input == "input_skip":
            self.pyramid_downsample = layers.Downsample(in_ch=None, fir=fir, fir_kernel=fir_kernel,
                                                        with_conv=False)

    def _build_down(self, config):
        """conv_in and down[i]; returns the channel counts of the skip activations (outermost first)."""
        nf, channels = self.nf, config.num_channels
        self._register("conv_in", layers.conv3x3(channels, nf))
        hs_c, in_ch, input_pyramid_ch = [nf], nf, channels
        self.down = nn.ModuleList()
        for i_level in range(self.num_resolutions):
            level = _Level()
            self.down.append(level)
            level.res, level.attn = nn.ModuleList(), nn.ModuleList()
            for i_block in range(self.num_res_blocks):
                out_ch = nf * self.ch_mult[i_level]
                self._register(f"down.{i_level}.res.{i_block}", self._resblock(in_ch=in_ch, out_ch=out_ch),
                               level.res)
                in_ch = out_ch
                if self.all_resolutions[i_level] in self.attn_resolutions:
                    self._register(f"down.{i_level}.attn.{i_block}", self._attn(channels=in_ch), level.attn)
                hs_c.append(in_ch)
            if i_level != self.num_resolutions - 1:
                in_ch, input_pyramid_ch = self._build_downsample(config, level, i_level, in_ch, input_pyramid_ch)
                hs_c.append(in_ch)
        return hs_c

    def _build_downsample(self, config, level, i_level, in_ch, input_pyramid_ch):
        """down[i].downsample and down[i].pyramid; returns the new (channels, input pyramid channels)."""
        if self.resblock_type == "ddpm":
            self._register(f"down.{i_level}.downsample", self._downsample(in_ch=in_ch), level, "downsample")
        else:
            self._register(f"down.{i_level}.downsample", self._resblock(down=True, in_ch=in_ch), level,
                           "downsample")
        if self.progressive_input == "input_skip":
            method = config.progressive_combine.lower()
            combine = layers.Combine(dim1=input_pyramid_ch, dim2=in_ch, method=method)
            self._register(f"down.{i_level}.pyramid", combine, level, "pyramid")
            return (2 * in_ch if method == "cat" else in_ch), input_pyramid_ch
        if self.progressive_input == "residual":
            pyramid = layers.Downsample(in_ch=input_pyramid_ch, out_ch=in_ch, with_conv=True, fir=config.fir,
                                        fir_kernel=tuple(config.fir_kernel))
            self._register(f"down.{i_level}.pyramid", pyramid, level, "pyramid")
            return in_ch, in_ch
        return in_ch, input_pyramid_ch

    def _build_mid(self, in_ch):
        self.mid = _Level()
        self._register("mid.res0", self._resblock(in_ch=in_ch), self.mid, "res0")
        self._register("mid.attn", self._attn(channels=in_ch), self.mid, "attn")
        self._register("mid.res1", self._resblock(in_ch=in_ch), self.mid, "res1")

    def _build_up(self, config, hs_c):
        """up[i], from the deepest level up, eating the skip channels ``hs_c``; returns the last width."""
        in_ch, pyramid_ch = hs_c[-1], 0
        self.up = nn.ModuleList([_Level() for _ in range(self.num_resolutions)])
        for i_level in reversed(range(self.num_resolutions)):
            level = self.up[i_level]
            level.res = nn.ModuleList()
            for i_block in range(self.num_res_blocks + 1):
                out_ch = self.nf * self.ch_mult[i_level]
                block = self._resblock(in_ch=in_ch + hs_c.pop(), out_ch=out_ch)
                self._register(f"up.{i_level}.res.{i_block}", block, level.res)
                in_ch = out_ch
            if self.all_resolutions[i_level] in self.attn_resolutions:
                self._register(f"up.{i_level}.attn", self._attn(channels=in_ch), level, "attn")
            if self.progressive != "none":
                pyramid_ch = self._build_output_pyramid(level, i_level, in_ch, pyramid_ch, config.num_channels)
            if i_level != 0:
                upsample = (self._upsample(in_ch=in_ch) if self.resblock_type == "ddpm"
                            else self._resblock(in_ch=in_ch, up=True))
                self._register(f"up.{i_level}.upsample", upsample, level, "upsample")
        assert not hs_c
        return in_ch

    def _build_z_mapping(self, config):
        """PixelNorm, dense(nz, z_emb_dim), SiLU, then n_mlp x (dense, SiLU)."""
        mapping = [layers.PixelNorm(), layers.fan_out_dense(config.nz, config.z_emb_dim), self.act]
        for _ in range(config.n_mlp):
            mapping += [layers.fan_out_dense(config.z_emb_dim, config.z_emb_dim), self.act]
        return nn.Sequential(*mapping)

    def _register(self, name, module, parent=None, attr=None):
        """Attach ``module`` (to ``parent`` under ``attr``, appended to a ModuleList, or to self)
        and record its path ``name`` in the reference's flat-list order."""
        if isinstance(parent, nn.ModuleList):
            parent.append(module)
        else:
            setattr(parent if parent is not None else self, attr or name, module)
        self._reference_order.append(name)

    def _build_time_embedding(self, config):
        if self.embedding_type == "fourier":
            self._register("fourier", layers.GaussianFourierProjection(self.nf, scale=config.fourier_scale))
            embed_dim = 2 * self.nf
        elif self.embedding_type == "positional":
            embed_dim = self.nf
        else:
            raise ValueError(f"embedding type {self.embedding_type} unknown.")
        if self.conditional:
            self._register("temb_dense0", layers.dense(embed_dim, self.nf * 4))
            self._register("temb_dense1", layers.dense(self.nf * 4, self.nf * 4))

    def _resblock_factory(self, config, act):
        common = {"act": act, "dropout": config.dropout, "init_scale": 0.0, "skip_rescale": self.skip_rescale,
                  "temb_dim": self.nf * 4, "zemb_dim": config.z_emb_dim}
        if self.resblock_type == "ddpm":
            return functools.partial(layers.ResnetBlockDDPM, **common)
        if self.resblock_type in ("biggan", "biggan_oneadagn"):
            return functools.partial(layers.ResnetBlockBigGAN, fir=config.fir, fir_kernel=tuple(config.fir_kernel),
                                     one_adagn=self.resblock_type == "biggan_oneadagn", **common)
        raise ValueError(f"resblock type {self.resblock_type} unrecognized.")

    def _build_output_pyramid(self, level, i_level, in_ch, pyramid_ch, channels):
        """Output-pyramid layers of one up level; returns the pyramid's new channel count."""
        first = i_level == self.num_resolutions - 1
        if self.progressive == "output_skip":
            self._register(f"up.{i_level}.pyramid_norm", layers.group_norm(in_ch), level, "pyramid_norm")
            self._register(f"up.{i_level}.pyramid_conv", layers.conv3x3(in_ch, channels, init_scale=0.0),
                           level, "pyramid_conv")
            return channels
        if first:
            self._register(f"up.{i_level}.pyramid_norm", layers.group_norm(in_ch), level, "pyramid_norm")
            self._register(f"up.{i_level}.pyramid_conv", layers.conv3x3(in_ch, in_ch), level, "pyramid_conv")
        else:
            pyramid_up = self._upsample(in_ch=pyramid_ch, out_ch=in_ch, with_conv=True)
            self._register(f"up.{i_level}.pyramid_up", pyramid_up, level, "pyramid_up")
        return in_ch

    def reference_names(self):
        """Module paths in the order of the reference's ``all_modules`` list."""
        return list(self._reference_order)

    # ------------------------------------------------------------------ forward

    def _skip(self, a, b):
        return (a + b) / np.sqrt(2.0) if self.skip_rescale else a + b

    def time_embedding(self, time_cond):
        """(B,) integer steps -> (B, 4 nf), or None when not conditional."""
        if self.embedding_type == "fourier":
            # The reference took log(t), which is -inf at t = 0; the step itself is embedded here.
            temb = self.fourier(time_cond.float())
        else:
            temb = layers.get_timestep_embedding(time_cond, self.nf)
        if not self.conditional:
            return None
        return self.temb_dense1(self.act(self.temb_dense0(temb)))

    def forward(self, x, time_cond, z):
        """x: (B, C, H, W) x_{t+1}; time_cond: (B,) int64 steps; z: (B, nz) -> x_0 (B, C, H, W)."""
        zemb = self.z_transform(z)
        temb = self.time_embedding(time_cond)
        if not self.config.centered:
            x = 2 * x - 1.0
        hs, h = self._down(x, temb, zemb)
        h = self.mid.res0(h, temb, zemb)
        h = self.mid.res1(self.mid.attn(h), temb, zemb)
        h = self._up(h, hs, temb, zemb)
        return h if self.not_use_tanh else torch.tanh(h)

    def _down(self, x, temb, zemb):
        """Downsampling path; returns the skip activations (outermost first) and the last one."""
        input_pyramid = x
        hs = [self.conv_in(x)]
        for i_level, level in enumerate(self.down):
            for i_block, block in enumerate(level.res):
                h = block(hs[-1], temb, zemb)
                if len(level.attn):
                    h = level.attn[i_block](h)
                hs.append(h)
            if i_level == self.num_resolutions - 1:
                continue
            if self.resblock_type == "ddpm":
                h = level.downsample(hs[-1])
            else:
                h = level.downsample(hs[-1], temb, zemb)
            if self.progressive_input == "input_skip":
                input_pyramid = self.pyramid_downsample(input_pyramid)
                h = level.pyramid(input_pyramid, h)
            elif self.progressive_input == "residual":
                input_pyramid = h = self._skip(level.pyramid(input_pyramid), h)
            hs.append(h)
        return hs, hs[-1]

    def _up(self, h, hs, temb, zemb):
        """Upsampling path consuming the skips ``hs``; returns the output before tanh."""
        pyramid = None
        for i_level in reversed(range(self.num_resolutions)):
            level = self.up[i_level]
            for block in level.res:
                h = block(torch.cat([h, hs.pop()], dim=1), temb, zemb)
            if hasattr(level, "attn"):
                h = level.attn(h)
            if self.progressive == "output_skip":
                pyramid_h = level.pyramid_conv(self.act(level.pyramid_norm(h)))
                pyramid = pyramid_h if pyramid is None else self.pyramid_upsample(pyramid) + pyramid_h
            elif self.progressive == "residual":
                if pyramid is None:
                    pyramid = level.pyramid_conv(self.act(level.pyramid_norm(h)))
                else:
                    pyramid = h = self._skip(level.pyramid_up(pyramid), h)
            if i_level != 0:
                if self.resblock_type == "ddpm":
                    h = level.upsample(h)
                else:
                    h = level.upsample(h, temb, zemb)
        assert not hs
        if self.progressive == "output_skip":
            return pyramid
        return self.out_conv(self.act(self.out_norm(h)))
