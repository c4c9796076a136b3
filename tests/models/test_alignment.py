"""The crop offsets put every score pixel over the input pixel it belongs to.

Hand-set weights turn each net into a position finder. Every convolution is an identity
on its two channels (one centre tap: a 3x3 reads only the pixel under it; an even kernel,
AlexNet's 6x6 fc6, averages its middle 2x2, centred too), biases are zero, the score
layers pass their input on (at-once: scaled back up), and the upsampling is the fixed
bilinear one. Channel 0 of the input is the ramp C + row, channel 1 C + column (channel
2 is not read).

A ramp goes through such a net unchanged but for max pooling, which takes the largest
value of each window, that is the bottom (or right) row of it: a bias of +half a window
per pool. Feeding C - row instead picks the top row, the same bias the other way. So

    (score(C + ramp) - score(C - ramp)) / 2

is each stream's estimate of where its receptive fields are centred, summed over the
streams fused (1 for FCN-32s, 2 for 16s, 3 for 8s), and it equals the pixel's own row
(column) exactly when the offsets are right. An offset one off moves it by a whole
pixel for the final crop, by 16 or 8 pixels of that stream for a skip's.

Only pixels far enough from the border are compared: near it the pools also see the
zero padding and the upsampling has one neighbour only. Values are tiny (amplitude
1e-6) so that AlexNet's LRN, the one nonlinearity besides ReLU and max, is the identity
to 1e-10.
"""
import numpy
import pytest

import minifcn as mf
from minifcn import models, nn
from minifcn.models import fcn

SIZE = 200          # input height and width
MARGIN = 64         # border left out of the comparison
C = 1000.0          # keeps C +- ramp positive, so ReLU and the zero padding stay out of it
AMPLITUDE = 1e-6

STREAMS = {"fcn32s": 1, "fcn16s": 2, "fcn8s": 3, "fcn8s-atonce": 3, "fcn-alexnet": 1}


def centre_taps(size):
    """1-D taps that read the centre of a window of `size` (the middle two if even)."""
    taps = numpy.zeros(size)
    taps[(size - 1) // 2: size // 2 + 1] = 1.0 / (2 - size % 2)
    return taps


def make_position_finder(name):
    net = models.build(name, 2, widths=(2, 2, 2, 2, 2), fc_width=2, init="zero",
                       dtype=numpy.float64)
    skip_scales = {"score_pool4": getattr(net, "pool4_scale", 1.0),
                   "score_pool3": getattr(net, "pool3_scale", 1.0)}
    for layer_name, layer in net._modules.items():
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            in_per_group = layer.weight.shape[1]
            for channel in range(2):  # identity: output channel c reads input channel c
                layer.weight.data[channel, channel % in_per_group] = numpy.outer(
                    centre_taps(kh), centre_taps(kw)) / skip_scales.get(layer_name, 1.0)
    return net.eval()


def position_estimate(net, streams):
    rows, cols = numpy.mgrid[0:SIZE, 0:SIZE].astype(numpy.float64)
    ramp = numpy.stack([rows, cols, 0 * rows])[None]  # the third input channel is unused
    up = net(mf.Tensor(AMPLITUDE * (C + ramp))).numpy()
    down = net(mf.Tensor(AMPLITUDE * (C - ramp))).numpy()
    estimate = (up - down) / (2 * AMPLITUDE * streams)
    inner = slice(MARGIN, SIZE - MARGIN)
    return estimate[0, :, inner, inner], ramp[0, :2, inner, inner]


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_scores_sit_over_their_pixels(name):
    estimate, truth = position_estimate(make_position_finder(name), STREAMS[name])
    numpy.testing.assert_allclose(estimate, truth, rtol=0, atol=1e-6)


@pytest.mark.parametrize("offset, by", [("SCORE_8S_OFFSET", 1), ("SCORE_POOL4_OFFSET", 1),
                                        ("SCORE_POOL3_OFFSET", -1)])
def test_a_wrong_offset_shows(monkeypatch, offset, by):
    monkeypatch.setattr(fcn, offset, getattr(fcn, offset) + by)
    estimate, truth = position_estimate(make_position_finder("fcn8s"), 3)
    assert numpy.abs(estimate - truth).min() > 0.3
