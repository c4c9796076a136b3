"""Dense output from a coarse net, two ways (paper section 3.2; docs/shift-and-stitch.md).

Shift-and-stitch. A net of output stride f scores only every f-th pixel. Run it f^2
times, on the input shifted left and up by (dx, dy) for 0 <= dy, dx < f, and interleave
the f^2 coarse maps:

    out[:, :, y f + dy, x f + dx] = fn(x_shifted(dy, dx))[:, :, y, x]
    x_shifted(dy, dx)[..., i, j]  = x[..., i + dy, j + dx], zero past the border

Backward: the stitch is a permutation, so each coarse map's gradient is the strided
slice gy[:, :, dy::f, dx::f]; a shift's input gradient is its output gradient shifted
back (right and down), zero where the shift filled in zeros.

Filter rarefaction. The same dense map from one pass of a modified net: the last pooling
layer's stride s becomes 1 and every filter after it is dilated by s (its taps spread s
cells apart; 1x1 filters are unchanged). Pooled cell j of the net shifted by d is pooled
cell s j + d of the rarefied net, and a dilated filter reads at s-cell spacing exactly
the cells the original one read at unit spacing. So, for `fn` = the part of the net
after the pool's input, shift_and_stitch(fn, pool_input, s) equals the rarefied part on
every cell whose pooling windows lie inside the map (tests/models/test_stitch.py states
and checks the exact set: borders and Caffe's ceil-rounded partial windows differ).

Costs: shift-and-stitch runs the whole net f^2 times on full-size inputs, but each run
is the original net; rarefaction runs once, but every layer after the pool works on an
s^2 times larger map (and, rarefying every pool, the whole net does).
"""
import numbers

from .. import backend
from .. import functions as F
from ..autograd import Function, Tensor


class Shift(Function):
    """x moved up by dy and left by dx rows/columns, zero-filled at the bottom/right."""

    def __init__(self, dy, dx):
        self.dy, self.dx = dy, dx

    def forward(self, x):
        out = backend.get_array_module(x).zeros_like(x)
        height, width = x.shape[2:]
        out[:, :, :height - self.dy, :width - self.dx] = x[:, :, self.dy:, self.dx:]
        return out

    def backward(self, gy):
        gx = backend.get_array_module(gy).zeros_like(gy)
        height, width = gy.shape[2:]
        gx[:, :, self.dy:, self.dx:] = gy[:, :, :height - self.dy, :width - self.dx]
        return gx


class Stitch(Function):
    """f^2 maps (N, K, h, w), in (dy, dx) row-major order -> one (N, K, h f, w f)."""

    def __init__(self, factor):
        self.factor = factor

    def forward(self, *maps):
        n, k, h, w = maps[0].shape
        f = self.factor
        out = backend.get_array_module(maps[0]).empty((n, k, h * f, w * f), maps[0].dtype)
        for index, coarse in enumerate(maps):
            dy, dx = divmod(index, f)
            out[:, :, dy::f, dx::f] = coarse
        return out

    def backward(self, gy):
        f = self.factor
        xp = backend.get_array_module(gy)
        return tuple(xp.ascontiguousarray(gy[:, :, dy::f, dx::f])
                     for dy in range(f) for dx in range(f))


def shift_and_stitch(fn, x, factor):
    """Dense (N, K, h * factor, w * factor) scores from f^2 runs of `fn` on shifted
    copies of `x` (see the module docstring), where (h, w) is fn(x)'s spatial shape.
    Differentiable in fn's parameters and in x."""
    if not isinstance(factor, numbers.Integral) or isinstance(factor, bool) or factor < 1:
        raise ValueError(f"shift_and_stitch: factor must be a positive int, got {factor!r}")
    if not isinstance(x, Tensor):
        x = Tensor(x)
    if x.ndim != 4:
        raise ValueError(f"shift_and_stitch: x must be (N, C, H, W), got shape {x.shape}")
    if factor > min(x.shape[2:]):
        raise ValueError(f"shift_and_stitch: factor {factor} exceeds the input's height or "
                         f"width, shape {x.shape}")
    maps = []
    for dy in range(factor):
        for dx in range(factor):
            coarse = fn(x if dy == dx == 0 else Shift(dy, dx)(x))
            if not isinstance(coarse, Tensor) or coarse.ndim != 4:
                raise ValueError(f"shift_and_stitch: fn must return an (N, K, h, w) Tensor, "
                                 f"got {getattr(coarse, 'shape', type(coarse).__name__)}")
            if maps and coarse.shape != maps[0].shape:
                raise ValueError(f"shift_and_stitch: fn gave shape {coarse.shape} for shift "
                                 f"({dy}, {dx}) but {maps[0].shape} unshifted")
            maps.append(coarse)
    return Stitch(factor)(*maps)


def fcn32s_tail(net, conv5, rarefy=False):
    """A VGG FCN's score_fr from the ReLU output of conv5_3: pool5 (2x2/2, ceil), fc6
    (7x7), fc7, score_fr, with their ReLUs and dropouts. rarefy=True is filter
    rarefaction: pool5 at stride 1 and fc6 dilated by 2 (fc7 and score_fr are 1x1), so
    score_fr comes out at stride 16 rather than 32: pool5's share of the stitch."""
    stride = 1 if rarefy else 2
    pool5 = F.max_pool2d(conv5, 2, stride=stride, ceil_mode=True)
    fc6 = net.fc6
    scores = F.conv2d(pool5, fc6.weight, fc6.bias, dilation=2 if rarefy else 1)
    drop6 = net.drop6(F.relu(scores))
    drop7 = net.drop7(F.relu(net.fc7(drop6)))
    return net.score_fr(drop7)


def conv5_features(net, data):
    """A VGG FCN's trunk up to the ReLU of conv5_3 (pool5's input)."""
    x = data
    for names in (("conv1_1", "conv1_2"), ("conv2_1", "conv2_2"),
                  ("conv3_1", "conv3_2", "conv3_3"), ("conv4_1", "conv4_2", "conv4_3")):
        x = net.block(x, *names)
    for name in ("conv5_1", "conv5_2", "conv5_3"):
        x = F.relu(getattr(net, name)(x))
    return x


def rarefied_scores(net, data):
    """score_fr of a VGG FCN (FCN32s, ...) at stride 16 by rarefying pool5: the stitch of
    the two shifts of conv5_3's map by one pass."""
    return fcn32s_tail(net, conv5_features(net, data), rarefy=True)


__all__ = ["conv5_features", "fcn32s_tail", "rarefied_scores", "shift_and_stitch"]
