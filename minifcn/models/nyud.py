"""The NYUDv2 nets (the reference's nyud-fcn32s-*, the paper's table 4): FCN-32s on
colour plus depth, fused early (one net, more input channels) or late (two nets, their
scores summed). Trained with `--data nyud:DIR`; `models.data_options` asks the NYUD
loader for the stacked input each needs (data/nyud.py: colour channels first).

    fcn32s-rgbd        conv1_1 takes 4 channels: BGR and log depth
    fcn32s-early-hha   conv1_1 takes 6 channels: BGR and HHA
    fcn32s-late-hha    a colour FCN-32s and an HHA FCN-32s on image[:3] and image[3:];
                       score_fused = (score_fr + hha.score_fr) / 2, then upscore, crop

Early fusion from VGG16 (`load_vgg16`): conv1_1's colour channels get VGG16's filters
and every extra channel the mean of the three colour filters, as the reference's
solve.py does (`conv1_1_bgrd[:, 3] = mean(conv1_1, axis=1)`). Here the layer keeps the
name conv1_1. Late fusion: both streams start from VGG16; the reference's Eltwise SUM
weighs each stream's scores by 0.5, and so does this net. The colour stream keeps the
FCN-32s names (conv1_1 ... score_fr), the HHA stream's are prefixed with `hha.`.
"""
import numpy

from .. import backend
from .. import functions as F
from ..autograd import Function
from ..nn import Conv2d
from .fcn import SCORE_32S_OFFSET, FCN32s, VGGFCN

RGB = 3


class ChannelSlice(Function):
    """y = x[:, start:stop]; the gradient goes back into those channels, zero elsewhere."""

    def __init__(self, start, stop):
        self.start, self.stop = start, stop

    def forward(self, x):
        self.in_shape = x.shape
        return backend.get_array_module(x).ascontiguousarray(x[:, self.start:self.stop])

    def backward(self, gy):
        gx = backend.get_array_module(gy).zeros(self.in_shape, gy.dtype)
        gx[:, self.start:self.stop] = gy
        return gx


def channels(x, start, stop):
    if x.ndim != 4 or not 0 <= start < stop <= x.shape[1]:
        raise ValueError(f"channels: cannot take channels {start}:{stop} of shape {x.shape}")
    return ChannelSlice(start, stop)(x)


def check_input(net, data):
    if data.ndim != 4 or data.shape[1] != net.in_channels:
        raise ValueError(f"{type(net).__name__}: expects (N, {net.in_channels}, H, W) input "
                         f"({net.INPUT}), got shape {data.shape}; train it with --data nyud:DIR")


class EarlyFusionFCN32s(FCN32s):
    """FCN-32s whose conv1_1 reads `in_channels` (colour first)."""

    in_channels = RGB
    INPUT = "BGR"

    def __init__(self, n_class=40, **options):
        super().__init__(n_class, **options)
        old = self.conv1_1
        wide = Conv2d(self.in_channels, old.weight.shape[0], 3, padding=old.padding,
                      init=options.get("init", "msra"), dtype=self.dtype)
        self._modules["conv1_1"] = wide  # same place in the parameter order
        object.__setattr__(self, "conv1_1", wide)

    def forward(self, data):
        check_input(self, data)
        return super().forward(data)

    def load_vgg16(self, path):
        """VGG16 as FCN32s.load_vgg16; conv1_1's extra channels the mean RGB filter."""
        wide = self.conv1_1
        narrow = Conv2d(RGB, wide.weight.shape[0], 3, padding=wide.padding, init="zero",
                        dtype=self.dtype)
        self._modules["conv1_1"] = narrow
        object.__setattr__(self, "conv1_1", narrow)
        try:
            super().load_vgg16(path)
        finally:
            self._modules["conv1_1"] = wide
            object.__setattr__(self, "conv1_1", wide)
        rgb = backend.to_numpy(narrow.weight.data)
        weight = numpy.concatenate(
            [rgb] + [rgb.mean(axis=1, keepdims=True)] * (self.in_channels - RGB), axis=1)
        wide.load_state_dict({"weight": weight, "bias": backend.to_numpy(narrow.bias.data)})
        return self


class FCN32sRGBD(EarlyFusionFCN32s):
    in_channels = 4
    INPUT = "BGR and log depth"
    DATA_OPTIONS = {"nyud": {"tops": ("color", "depth")}}


class FCN32sEarlyHHA(EarlyFusionFCN32s):
    in_channels = 6
    INPUT = "BGR and HHA"
    DATA_OPTIONS = {"nyud": {"tops": ("color", "hha")}}


class FCN32sLateHHA(FCN32s):
    """Two FCN-32s streams, colour (this net's own layers) and HHA (`self.hha`), their
    score_fr maps averaged before the one fixed upsampling."""

    in_channels = 6
    INPUT = "BGR and HHA"
    DATA_OPTIONS = {"nyud": {"tops": ("color", "hha")}}
    fusion_weight = 0.5  # the reference's Eltwise coeff for each stream

    def __init__(self, n_class=40, **options):
        super().__init__(n_class, **options)
        self.hha = VGGFCN(n_class, **options)

    def forward(self, data):
        check_input(self, data)
        _, _, drop7 = self.features(channels(data, 0, RGB))
        _, _, drop7_hha = self.hha.features(channels(data, RGB, 2 * RGB))
        score_fused = (self.score_fr(drop7) + self.hha.score_fr(drop7_hha)) * self.fusion_weight
        return F.crop(self.upscore(score_fused), data, SCORE_32S_OFFSET)

    def load_vgg16(self, path):
        super().load_vgg16(path)
        self.hha.load_vgg16(path)
        return self
