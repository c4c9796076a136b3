"""VGG16 (Simonyan and Zisserman), the classifier the FCNs are made from.

    conv1_1 conv1_2 pool1                   3x3 convolutions, each followed by ReLU;
    conv2_1 conv2_2 pool2                   2x2 stride 2 max pooling, Caffe's ceil rounding
    conv3_1 conv3_2 conv3_3 pool3
    conv4_1 conv4_2 conv4_3 pool4
    conv5_1 conv5_2 conv5_3 pool5           512 x 7 x 7 for a 224 x 224 image
    fc6 relu6 drop6, fc7 relu7 drop7        4096, 4096, dropout 0.5
    fc8                                     the 1000 ImageNet classes

VGGTrunk builds conv1_1 ... drop7 once for every net here. In the classifier (VGG16)
fc6 is a Linear layer on the flattened pool5; "convolutionalizing" it (the FCN paper's
first step) turns fc6 into a 7x7 convolution and fc7, fc8 into 1x1 convolutions with
the same weights, reshaped: (4096, 512*7*7) -> (4096, 512, 7, 7). The net then takes
any image size and gives a map of class scores, one per 224 x 224 window at stride 32.
"""
import math
import numbers

import numpy

from .. import functions as F
from ..nn import Conv2d, Dropout, Linear, Module

VGG16_WIDTHS = (64, 128, 256, 512, 512)  # channels of the convolutions of blocks 1 ... 5
VGG16_FC_WIDTH = 4096
BLOCKS = (("conv1_1", "conv1_2"),
          ("conv2_1", "conv2_2"),
          ("conv3_1", "conv3_2", "conv3_3"),
          ("conv4_1", "conv4_2", "conv4_3"),
          ("conv5_1", "conv5_2", "conv5_3"))
TRUNK_LAYERS = tuple(name for block in BLOCKS for name in block) + ("fc6", "fc7")
FC6_GRID = 7  # fc6 sees a 7 x 7 window of pool5


def positive_ints(name, values, count):
    """`values` as a tuple of `count` positive ints, or a ValueError saying what is wrong."""
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    valid = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
                for v in values)
    if len(values) != count or not valid:
        raise ValueError(f"{name} must be {count} positive int{'s' if count > 1 else ''}, "
                         f"got {values if count > 1 else values[0]!r}")
    values = tuple(int(v) for v in values)
    return values if count > 1 else values[0]


class VGGTrunk(Module):
    """conv1_1 ... conv5_3 with their pools, then fc6, fc7 and their dropouts.

    widths: the channels of each block's convolutions (VGG16: 64, 128, 256, 512, 512);
    fc_width: fc6's and fc7's (4096). conv1_1_pad: 1 in the classifier, 100 in the FCNs.
    fc_as_conv: fc6/fc7 as 7x7 and 1x1 convolutions rather than Linear layers.
    """

    def __init__(self, widths, fc_width, conv1_1_pad, fc_as_conv, init, dtype):
        super().__init__()
        self.widths = positive_ints("widths", widths, len(BLOCKS))
        self.fc_width = positive_ints("fc_width", fc_width, 1)
        self.dtype = numpy.dtype(dtype)
        channels = 3
        for names, width in zip(BLOCKS, self.widths):
            for name in names:
                padding = conv1_1_pad if name == "conv1_1" else 1
                setattr(self, name, Conv2d(channels, width, 3, padding=padding, init=init,
                                           dtype=dtype))
                channels = width
        fc_width = self.fc_width
        if fc_as_conv:  # the fully convolutional nets: fc6 a 7x7 convolution, fc7 a 1x1
            fc6 = Conv2d(channels, fc_width, FC6_GRID, init=init, dtype=dtype)
            fc7 = Conv2d(fc_width, fc_width, 1, init=init, dtype=dtype)
        else:  # the classifier: fc6 sees pool5 (7 x 7) flattened
            fc6 = Linear(channels * FC6_GRID * FC6_GRID, fc_width, init=init, dtype=dtype)
            fc7 = Linear(fc_width, fc_width, init=init, dtype=dtype)
        self.fc6, self.drop6 = fc6, Dropout(0.5)
        self.fc7, self.drop7 = fc7, Dropout(0.5)

    # Caffe's in-place ReLU (functions/activation.py); False only to measure what it
    # saves (benchmarks/cpu_nets.py --copying-relu).
    inplace_relu = True

    def block(self, x, *convs):
        """Each named conv + ReLU, then pool: 2x2 stride 2 max, rounding up as Caffe does."""
        for name in convs:
            x = F.relu(getattr(self, name)(x), inplace=self.inplace_relu)
        return F.max_pool2d(x, 2, stride=2, ceil_mode=True)

    def features(self, data):
        """(pool3, pool4, drop7): the trunk's output and the two pools the skips score."""
        pool1 = self.block(data, "conv1_1", "conv1_2")
        pool2 = self.block(pool1, "conv2_1", "conv2_2")
        pool3 = self.block(pool2, "conv3_1", "conv3_2", "conv3_3")
        pool4 = self.block(pool3, "conv4_1", "conv4_2", "conv4_3")
        pool5 = self.block(pool4, "conv5_1", "conv5_2", "conv5_3")
        drop6 = self.drop6(F.relu(self.fc6(pool5), inplace=self.inplace_relu))
        drop7 = self.drop7(F.relu(self.fc7(drop6), inplace=self.inplace_relu))
        return pool3, pool4, drop7

    def device(self):
        return self.conv1_1.weight.device


class VGG16(VGGTrunk):
    """The ImageNet classifier: (N, 3, 224, 224) -> (N, n_class) scores."""

    fully_convolutional = False  # fc6, fc7, fc8 as Linear layers

    def __init__(self, n_class=1000, widths=VGG16_WIDTHS, fc_width=VGG16_FC_WIDTH, init="msra",
                 dtype=numpy.float32):
        super().__init__(widths, fc_width, conv1_1_pad=1, fc_as_conv=self.fully_convolutional,
                         init=init, dtype=dtype)
        self.n_class = positive_ints("n_class", n_class, 1)
        if self.fully_convolutional:
            self.fc8 = Conv2d(self.fc_width, self.n_class, 1, init=init, dtype=dtype)
        else:
            self.fc8 = Linear(self.fc_width, self.n_class, init=init, dtype=dtype)

    def forward(self, data):
        _, _, drop7 = self.features(data)
        return self.fc8(drop7)

    def convolutionalize(self):
        """The same classifier as a fully convolutional net (a copy; same parameter names)."""
        net = FullyConvVGG16(self.n_class, self.widths, self.fc_width, init="zero",
                             dtype=self.dtype)
        transplant(net, self.state_dict())
        return net.to(self.device()).train(self.training)


class FullyConvVGG16(VGG16):
    """VGG16 with fc6, fc7, fc8 as convolutions: (N, 3, H, W) -> (N, n_class, h, w) for
    H, W >= 193, one score vector per 224 x 224 window at stride 32: h = ceil(H / 32) - 6
    (the pools round up)."""

    fully_convolutional = True


def transplant(net, weights):
    """Copy `weights` ({name: array}) into `net`'s parameters of the same names, reshaping
    a fully connected weight (M, C*kh*kw) into the (M, C, kh, kw) convolution it becomes
    (the reference surgery.transplant's "coercing"). Names `net` lacks are an error, as is
    any other shape mismatch (naming the parameter and both shapes)."""
    own = dict(net.named_parameters())
    unknown = [name for name in weights if name not in own]
    if unknown:
        raise KeyError(f"transplant: {type(net).__name__} has no parameter {', '.join(unknown)}")
    coerced = {}
    for name, value in weights.items():
        shape = own[name].shape
        if (value.shape != shape and len(shape) == 4
                and value.shape == (shape[0], math.prod(shape[1:]))):
            value = value.reshape(shape)
        coerced[name] = value
    net.load_state_dict(coerced, strict=False)
