"""The layers with parameters (Conv2d, ConvTranspose2d, Linear) and Dropout.

Each learned layer holds `weight` and, where it has one, `bias` as Parameters carrying
Caffe's multipliers. The reference FCN nets give every convolution
`param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]`: the bias learns
twice as fast and is not decayed. That is the default here, as (weight, bias) pairs
`lr_mult=(1, 2)`, `decay_mult=(1, 0)`.
"""
import numbers

import numpy

from .. import functions as F
from .init import bilinear_kernel, fill, float_dtype
from .module import Module, Parameter


def _pair(name, value):
    pair = (value, value) if isinstance(value, numbers.Integral) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _add_weight_and_bias(layer, weight, n_out, bias, lr_mult, decay_mult, dtype):
    """Register `weight` (an array) and, if asked, a zero bias of n_out on `layer`."""
    layer.weight = Parameter(weight, lr_mult[0], decay_mult[0])
    layer.bias = (Parameter(numpy.zeros(n_out, float_dtype(dtype)), lr_mult[1], decay_mult[1])
                  if bias else None)


def _check_groups(layer, in_channels, out_channels, groups):
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(f"{layer}: {in_channels} input and {out_channels} output channels "
                         f"must both divide by groups={groups}")


class Conv2d(Module):
    """2-D convolution (Caffe "Convolution"), weight (out, in/groups, kh, kw)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, init="msra", lr_mult=(1.0, 2.0), decay_mult=(1.0, 0.0),
                 dtype=numpy.float32):
        super().__init__()
        _check_groups("Conv2d", in_channels, out_channels, groups)
        self.kernel_size = _pair("Conv2d kernel_size", kernel_size)
        self.stride, self.padding = stride, padding
        self.dilation, self.groups = dilation, groups
        shape = (out_channels, in_channels // groups) + self.kernel_size
        _add_weight_and_bias(self, fill(init, shape, dtype), out_channels, bias,
                             lr_mult, decay_mult, dtype)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)

    def extra_repr(self):
        out_channels, in_per_group = self.weight.shape[:2]
        defaults = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}
        options = "".join(f", {key}={getattr(self, key)}" for key, default in defaults.items()
                          if getattr(self, key) != default)
        return f"{in_per_group * self.groups}, {out_channels}, kernel={self.kernel_size}{options}"


class ConvTranspose2d(Module):
    """Transposed convolution (Caffe "Deconvolution"), weight (in, out/groups, k, k).

    init="bilinear" (the default) makes it bilinear upsampling by a factor of `stride`
    when kernel_size = 2 * stride (FCN's upscore layers). `learn`: False fixes the
    weight (lr_mult 0, the reference nets' choice), True learns it (lr_mult 1), a number
    is the lr_mult itself. A bias, if asked for, gets twice that and no decay.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1,
                 bias=False, learn=False, init="bilinear", dtype=numpy.float32):
        super().__init__()
        _check_groups("ConvTranspose2d", in_channels, out_channels, groups)
        self.kernel_size = _pair("ConvTranspose2d kernel_size", kernel_size)
        self.stride, self.padding, self.groups = stride, padding, groups
        shape = (in_channels, out_channels // groups) + self.kernel_size
        if init == "bilinear":
            if self.kernel_size[0] != self.kernel_size[1]:
                raise ValueError(f"ConvTranspose2d: a bilinear kernel is square, got "
                                 f"{self.kernel_size}")
            weight = bilinear_kernel(*shape[:3], dtype=dtype)
        else:
            weight = fill(init, shape, dtype)
        weight_lr = float(learn) if not isinstance(learn, bool) else (1.0 if learn else 0.0)
        _add_weight_and_bias(self, weight, out_channels, bias, (weight_lr, 2 * weight_lr),
                             (1.0, 0.0), dtype)

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.groups)

    def extra_repr(self):
        in_channels, out_per_group = self.weight.shape[:2]
        fixed = ", fixed" if self.weight.lr_mult == 0 else ""
        return (f"{in_channels}, {out_per_group * self.groups}, kernel={self.kernel_size}, "
                f"stride={self.stride}{fixed}")


class Linear(Module):
    """Fully connected layer (Caffe "InnerProduct"): y = x W^T + b, W (out, in)."""

    def __init__(self, in_features, out_features, bias=True, init="msra", lr_mult=(1.0, 2.0),
                 decay_mult=(1.0, 0.0), dtype=numpy.float32):
        super().__init__()
        _add_weight_and_bias(self, fill(init, (out_features, in_features), dtype), out_features,
                             bias, lr_mult, decay_mult, dtype)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}"


class Dropout(Module):
    """Inverted dropout with ratio p while training; the identity in eval mode."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training)

    def extra_repr(self):
        return f"p={self.p}"
