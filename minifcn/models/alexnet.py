"""FCN-AlexNet: AlexNet (Krizhevsky et al.) convolutionalized, as voc-fcn-alexnet/net.py.

    conv1 11x11/4 pad 100, 96     pool1 3x3/2   norm1 (LRN 5, 1e-4, 0.75)
    conv2 5x5 pad 2, 256, group 2 pool2 3x3/2   norm2
    conv3 3x3 pad 1, 384
    conv4 3x3 pad 1, 384, group 2
    conv5 3x3 pad 1, 256, group 2 pool5 3x3/2
    fc6 6x6, 4096, fc7 1x1, 4096 (ReLU and dropout 0.5 after each), score_fr 1x1
    upscore 63/32, crop 18

Every conv is followed by ReLU; pools round up as Caffe's do. Groups split the channels
in two halves that do not see each other (AlexNet's two GPUs). The trunk's layers keep
Caffe's default multipliers (lr 1 and decay 1 for weights and biases alike: the
reference net.py sets none), score_fr has the usual (1, 1) and (2, 0).

Crop 18, by the bookkeeping of fcn.py: conv1 centres output p on input 4 p - 95, a 3x3/2
pool centres q on 2 q + 1 of its input, fc6 (6x6) centres r on r + 2.5. So score_fr cell
y is centred on 4 (2 (2 (2 (y + 2.5) + 1) + 1) + 1) - 95 = 32 y + 13, and upscore (63/32,
centre 31) puts it at 32 y + 31 = (32 y + 13) + 18.
"""
import functools

import numpy

from .. import functions as F
from ..nn import Conv2d, Dropout, Module
from .fcn import score_layer, upsampling_layer
from .segmenter import Segmenter
from .vgg import positive_ints

ALEXNET_WIDTHS = (96, 256, 384, 384, 256)  # conv1 ... conv5
ALEXNET_FC_WIDTH = 4096
SCORE_OFFSET = 18


def pool(x):
    return F.max_pool2d(x, 3, stride=2, ceil_mode=True)


def norm(x):
    return F.local_response_norm(x, size=5, alpha=1e-4, beta=0.75)


class FCNAlexNet(Segmenter, Module):
    """FCN-AlexNet. `widths` are conv1 ... conv5's channels (all even: conv2, conv4 and
    conv5 split theirs in two groups), `fc_width` fc6/fc7's; other options as fcn.py's
    nets (`learn_upsampling` is accepted for a common interface: the one upsampling is
    the final one, hence fixed)."""

    def __init__(self, n_class=21, widths=ALEXNET_WIDTHS, fc_width=ALEXNET_FC_WIDTH,
                 init="msra", learn_upsampling=False, dtype=numpy.float32):
        super().__init__()
        self.n_class = positive_ints("n_class", n_class, 1)
        self.widths = positive_ints("widths", widths, 5)
        self.fc_width = positive_ints("fc_width", fc_width, 1)
        self.dtype = numpy.dtype(dtype)
        self.learn_upsampling = bool(learn_upsampling)
        self.input_meta = {}
        conv = functools.partial(Conv2d, init=init, lr_mult=(1, 1), decay_mult=(1, 1), dtype=dtype)
        c1, c2, c3, c4, c5 = self.widths
        self.conv1 = conv(3, c1, 11, stride=4, padding=100)
        self.conv2 = conv(c1, c2, 5, padding=2, groups=2)
        self.conv3 = conv(c2, c3, 3, padding=1)
        self.conv4 = conv(c3, c4, 3, padding=1, groups=2)
        self.conv5 = conv(c4, c5, 3, padding=1, groups=2)
        self.fc6 = conv(c5, fc_width, 6)
        self.drop6 = Dropout(0.5)
        self.fc7 = conv(fc_width, fc_width, 1)
        self.drop7 = Dropout(0.5)
        self.score_fr = score_layer(fc_width, n_class, dtype)
        self.upscore = upsampling_layer(n_class, 32, kernel_size=63, dtype=dtype)

    def forward(self, data):
        norm1 = norm(pool(F.relu(self.conv1(data))))
        norm2 = norm(pool(F.relu(self.conv2(norm1))))
        conv3 = F.relu(self.conv3(norm2))
        conv4 = F.relu(self.conv4(conv3))
        pool5 = pool(F.relu(self.conv5(conv4)))
        drop6 = self.drop6(F.relu(self.fc6(pool5)))
        drop7 = self.drop7(F.relu(self.fc7(drop6)))
        score_fr = self.score_fr(drop7)
        upscore = self.upscore(score_fr)
        return F.crop(upscore, data, SCORE_OFFSET)
