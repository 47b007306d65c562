"""FIR up/down-sampling (StyleGAN2's upfirdn2d) in plain PyTorch.

Every filter here is a depthwise convolution (or transposed convolution), so nothing
is compiled at import and everything runs on CPU and GPU alike.  ``k`` is a 1-D list
of taps such as (1, 3, 3, 1), made separable and normalised to sum 1, or such a kernel
already made: the layers keep theirs as a buffer (``register_fir``), so that it lives on
their device; made anew on the CPU at every call, it was copied to the GPU, and a
blocking copy waits for every queued kernel (a host-device sync per resampling).
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def setup_kernel(k):
    """2-D float32 FIR kernel (kh, kw) from 1-D taps (outer product) or a 2-D array, summing to 1."""
    k = np.asarray(k, dtype=np.float32)
    if k.ndim == 1:
        k = np.outer(k, k)
    return torch.from_numpy(k / np.sum(k))


def register_fir(module, taps):
    """Give ``module`` the buffer ``fir_filter`` = setup_kernel(taps): it moves with the module and
    stays out of the state dict."""
    module.register_buffer("fir_filter", setup_kernel(taps), persistent=False)


def _kernel(k):
    """A kernel of setup_kernel (e.g. a layer's ``fir_filter``) as it is; taps made into one."""
    return k if torch.is_tensor(k) else setup_kernel(k)


def _depthwise(kernel, channels, x):
    """(C, 1, kh, kw) copy of a 2-D kernel in x's dtype (on x's device: a no-op for a layer's buffer)."""
    kernel = kernel.to(device=x.device, dtype=x.dtype)
    return kernel[None, None].expand(channels, 1, *kernel.shape).contiguous()


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """Zero-insertion upsampling by ``up``, padding ``pad`` = (before, after) on both axes
    (negative crops), true convolution with ``kernel`` (kh, kw), then subsampling by ``down``.

    x: (B, C, H, W) -> (B, C, (H * up + pad0 + pad1 - kh + 1) // down (ceil), ...).
    """
    channels = x.shape[1]
    kh, kw = kernel.shape
    p0, p1 = pad
    if up > 1:
        # A stride-`up` transposed conv inserts the zeros and filters in one op; it pads
        # (kh - 1, kh - up) implicitly, so adjust the borders to the requested padding.
        x = F.conv_transpose2d(x, _depthwise(kernel, channels, x), stride=up, groups=channels)
        x = F.pad(x, [p0 - (kw - 1), p1 - (kw - up), p0 - (kh - 1), p1 - (kh - up)])
        return x[:, :, ::down, ::down] if down > 1 else x
    x = F.pad(x, [p0, p1, p0, p1])
    flipped = torch.flip(kernel, [0, 1])
    return F.conv2d(x, _depthwise(flipped, channels, x), stride=down, groups=channels)


def upsample_2d(x, k=(1, 3, 3, 1), factor=2, gain=1):
    """FIR-filtered 2x (``factor``) upsampling: (B, C, H, W) -> (B, C, H * factor, W * factor)."""
    kernel = _kernel(k) * (gain * factor**2)
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x, k=(1, 3, 3, 1), factor=2, gain=1):
    """FIR-filtered downsampling: (B, C, H, W) -> (B, C, H // factor, W // factor)."""
    kernel = _kernel(k) * gain
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_2d(x, w, k=(1, 3, 3, 1), factor=2, gain=1):
    """Upsample by ``factor`` then convolve with ``w`` (out, in, kh, kw), then FIR-filter.

    The transposed convolution takes ``w`` flipped and with in/out swapped, so the result
    equals a plain convolution of the zero-inserted input (the reference crashed here).
    """
    conv = w.shape[-1]
    kernel = _kernel(k) * (gain * factor**2)
    p = (kernel.shape[0] - factor) - (conv - 1)
    x = F.conv_transpose2d(x, torch.flip(w, [2, 3]).transpose(0, 1), stride=factor)
    return upfirdn2d(x, kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_2d(x, w, k=(1, 3, 3, 1), factor=2, gain=1):
    """FIR-filter, then convolve with ``w`` (out, in, kh, kw) at stride ``factor``."""
    conv = w.shape[-1]
    kernel = _kernel(k) * gain
    p = (kernel.shape[0] - factor) + (conv - 1)
    x = upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2))
    return F.conv2d(x, w, stride=factor)


def naive_upsample_2d(x, factor=2):
    """Nearest-neighbour upsampling."""
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def naive_downsample_2d(x, factor=2):
    """Box-filter (mean) downsampling."""
    return F.avg_pool2d(x, factor, stride=factor)


class Conv2d(nn.Module):
    """A conv layer with optional FIR up- or downsampling fused around it.

    Parameters ``weight`` (out, in, k, k) and ``bias`` (out,), as in the reference.
    """

    def __init__(self, in_ch, out_ch, kernel, up=False, down=False, resample_kernel=(1, 3, 3, 1),
                 use_bias=True, kernel_init=None):
        super().__init__()
        assert not (up and down) and kernel >= 1 and kernel % 2 == 1
        weight = torch.zeros(out_ch, in_ch, kernel, kernel)
        self.weight = nn.Parameter(kernel_init(weight.shape) if kernel_init is not None else weight)
        self.bias = nn.Parameter(torch.zeros(out_ch)) if use_bias else None
        self.up, self.down = up, down
        if up or down:
            register_fir(self, resample_kernel)
        self.kernel = kernel

    def forward(self, x):
        if self.up:
            x = upsample_conv_2d(x, self.weight, k=self.fir_filter)
        elif self.down:
            x = conv_downsample_2d(x, self.weight, k=self.fir_filter)
        else:
            x = F.conv2d(x, self.weight, padding=self.kernel // 2)
        return x if self.bias is None else x + self.bias.reshape(1, -1, 1, 1)
