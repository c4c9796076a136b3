"""Shift-and-stitch against a plain-loop reference, its gradients, and filter
rarefaction against shift-and-stitch in float64, on exactly the cells where they agree.

Which cells agree. Let the pool (kernel = stride = f, floor or Caffe's ceil rounding) see
a map of A rows, of which the top t rows read the zero padding of the layers before it
(t = 0 when nothing before the pool pads), and give P pooled rows. The net shifted by d
(0 <= d < f) pools the rows f j .. f j + f - 1 of the shifted map, which are the rows
f j + d .. of the unshifted one: its pooled row j is the rarefied net's pooled row
f j + d exactly when
    f j + d + f - 1 <= A - 1          (the window ends inside the unshifted map: no
                                       zero fill from the shift, no partial ceil window)
    and (d == 0 or f j >= t)          (no row that read padding the shift displaced).
Pooled rows outside [0, P) are zero padding on both sides. So a stitched cell y f + d
equals the rarefied cell y f + d iff every pooled row j in [y + lo, y + hi] ∩ [0, P)
(lo..hi: the taps of the filters after the pool) passes, and likewise for columns with
dx. The tests below compute this set, assert equality to 1e-12 on all of it, and
assert that the cells outside it do differ somewhere (the set is not drawn too small).
In particular, with floor pooling, no padding before the pool and A = f - 1 (mod f),
every stitched cell agrees and both maps have A - f + 1 rows.
"""
import numpy
import pytest

import minifcn as mf
from minifcn import functions as F
from minifcn.gradcheck import check_backward
from minifcn.models import stitch


def plain_shift_and_stitch(fn, x, factor):
    """The definition, with loops: shifted copies, then one cell at a time."""
    n, _, height, width = x.shape
    coarse = {}
    for dy in range(factor):
        for dx in range(factor):
            shifted = numpy.zeros_like(x)
            for i in range(height):
                for j in range(width):
                    if i + dy < height and j + dx < width:
                        shifted[:, :, i, j] = x[:, :, i + dy, j + dx]
            coarse[dy, dx] = fn(shifted)
    k, h, w = coarse[0, 0].shape[1:]
    out = numpy.empty((n, k, h * factor, w * factor))
    for (dy, dx), scores in coarse.items():
        for y in range(h):
            for xx in range(w):
                out[:, :, y * factor + dy, xx * factor + dx] = scores[:, :, y, xx]
    return out


@pytest.mark.parametrize("factor, size", [(1, (5, 6)), (2, (7, 8)), (3, (9, 7)), (4, (13, 11))])
def test_shift_and_stitch_matches_the_definition(rng, factor, size):
    x = rng.standard_normal((2, 3) + size)
    weight = rng.standard_normal((4, 3, 3, 3))
    bias = rng.standard_normal(4)

    def coarse(t):  # output stride `factor`
        return F.conv2d(t, mf.Tensor(weight), mf.Tensor(bias), stride=factor, padding=1)

    dense = mf.models.shift_and_stitch(coarse, mf.Tensor(x), factor)
    expected = plain_shift_and_stitch(lambda a: coarse(mf.Tensor(a)).numpy(), x, factor)
    h, w = coarse(mf.Tensor(x)).shape[2:]
    assert dense.shape == (2, 4, h * factor, w * factor)
    numpy.testing.assert_allclose(dense.numpy(), expected, rtol=0, atol=1e-12)


def test_shift_and_stitch_gradients(rng):
    def fn(x, weight, bias):
        return mf.models.shift_and_stitch(
            lambda t: F.max_pool2d(F.conv2d(t, weight, bias, padding=1), 2, 2, ceil_mode=True),
            x, 2)
    check_backward(fn, [rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((3, 2, 3, 3)),
                        rng.standard_normal(3)])


@pytest.mark.parametrize("bad, match", [(0, "positive"), (2.0, "positive"), (9, "exceeds")])
def test_shift_and_stitch_bad_factor(bad, match):
    with pytest.raises(ValueError, match=f"shift_and_stitch.*{match}"):
        mf.models.shift_and_stitch(lambda t: t, mf.Tensor(numpy.zeros((1, 1, 8, 8))), bad)


def test_shift_and_stitch_needs_a_4d_map():
    with pytest.raises(ValueError, match=r"shift_and_stitch: fn must return an \(N, K, h, w\)"):
        mf.models.shift_and_stitch(lambda t: t.sum(), mf.Tensor(numpy.zeros((1, 1, 4, 4))), 2)


def agreeing(f, length, pooled, d, taps, top_rows):
    """Per stitched cell y f + d of one axis: does the rule above say it agrees?"""
    lo, hi = taps
    out_cells = pooled - (hi - lo) if lo == 0 else pooled  # valid filters shrink the map
    ok = numpy.zeros(out_cells * f, bool)
    for y in range(out_cells):
        taps_in_map = [j for j in range(y + lo, y + hi + 1) if 0 <= j < pooled]
        ok[y * f + d] = all(f * j + d + f - 1 <= length - 1 and (d == 0 or f * j >= top_rows)
                            for j in taps_in_map)
    return ok


def agreement_mask(f, shape, pooled, taps, top_rows):
    """(H_out f, W_out f) mask over the stitched map: the cells the rule says agree."""
    rows = [agreeing(f, shape[0], pooled[0], d, taps, top_rows) for d in range(f)]
    cols = [agreeing(f, shape[1], pooled[1], d, taps, top_rows) for d in range(f)]
    row_ok = numpy.logical_or.reduce(rows)
    col_ok = numpy.logical_or.reduce(cols)
    return row_ok[:, None] & col_ok[None, :]


def compare(stitched, rarefied, mask):
    """Equal on the mask, and different somewhere off it (when off-mask cells exist)."""
    rows = min(stitched.shape[2], rarefied.shape[2])
    cols = min(stitched.shape[3], rarefied.shape[3])
    assert not mask[rows:].any() and not mask[:, cols:].any()
    a, b = stitched[:, :, :rows, :cols], rarefied[:, :, :rows, :cols]
    inside = mask[:rows, :cols]
    assert inside.sum() > 0
    numpy.testing.assert_allclose(a[:, :, inside], b[:, :, inside], rtol=0, atol=1e-12)
    outside = ~inside
    if outside.any():
        assert numpy.abs(a[:, :, outside] - b[:, :, outside]).max() > 1e-6


@pytest.mark.parametrize("f, size, ceil", [(2, (11, 9), False), (2, (12, 10), False),
                                           (2, (11, 12), True), (3, (14, 13), False),
                                           (3, (16, 12), True), (2, (9, 9), True)])
def test_rarefaction_equals_shift_and_stitch(rng, f, size, ceil):
    """conv 3x3 pad 1, ReLU, f x f / f max pool, conv 3x3 pad 1, ReLU, 1x1 score. The
    rarefied net pools at stride 1 and dilates the 3x3 after it by f (padding f)."""
    w1, b1 = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    w2, b2 = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    w3, b3 = rng.standard_normal((2, 4, 1, 1)), rng.standard_normal(2)
    T = mf.Tensor

    def net(x, rate):
        a = F.relu(F.conv2d(x, T(w1), T(b1), padding=1))
        pooled = F.max_pool2d(a, f, stride=f // rate, ceil_mode=ceil)
        c = F.relu(F.conv2d(pooled, T(w2), T(b2), padding=rate, dilation=rate))
        return F.conv2d(c, T(w3), T(b3))

    x = T(rng.standard_normal((1, 2) + size))
    stitched = mf.models.shift_and_stitch(lambda t: net(t, 1), x, f).numpy()
    rarefied = net(x, f).numpy()
    pooled = [(-(-a // f) if ceil else a // f) for a in size]  # the pool input is H x W
    compare(stitched, rarefied, agreement_mask(f, size, pooled, (-1, 1), top_rows=1))


def test_rarefaction_is_exact_everywhere_when_the_rule_says_so(rng):
    """floor pooling, nothing padded before the pool, A = f - 1 (mod f): all cells."""
    f, size = 3, (16, 13)
    w1, w2 = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((2, 3, 3, 3))
    T = mf.Tensor

    def net(x, rate):
        pooled = F.max_pool2d(F.relu(F.conv2d(x, T(w1))), f, stride=f // rate)
        return F.conv2d(pooled, T(w2), padding=rate, dilation=rate)

    x = T(rng.standard_normal((1, 2) + size))  # pool input 14 x 11 (both 2 mod 3), stitched 12 x 9

    stitched = mf.models.shift_and_stitch(lambda t: net(t, 1), x, f).numpy()
    rarefied = net(x, f).numpy()
    assert stitched.shape == rarefied.shape == (1, 2, 12, 9)
    numpy.testing.assert_allclose(stitched, rarefied, rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [(9, 9), (10, 12), (13, 11)])
def test_fcn32s_rarefied_pool5_equals_stitched_pool5(rng, size):
    """A narrow FCN-32s in float64: score_fr with pool5 rarefied (stride 16) against the
    two-by-two stitch of the trained tail over conv5_3's map (ceil pool, fc6 7x7 valid)."""
    net = mf.models.FCN32s(n_class=3, widths=(2, 2, 2, 2, 3), fc_width=4,
                           dtype=numpy.float64).eval()
    for name, param in net.named_parameters():
        if name.startswith("score_fr"):
            param.data[...] = rng.standard_normal(param.shape)
    conv5 = mf.Tensor(numpy.abs(rng.standard_normal((1, 3, size[0] + 12, size[1] + 12))))
    stitched = mf.models.shift_and_stitch(lambda t: stitch.fcn32s_tail(net, t), conv5, 2)
    rarefied = stitch.fcn32s_tail(net, conv5, rarefy=True)
    shape = conv5.shape[2:]
    pooled = [-(-a // 2) for a in shape]
    compare(stitched.numpy(), rarefied.numpy(),
            agreement_mask(2, shape, pooled, (0, 6), top_rows=0))


def test_rarefied_scores_is_the_tail_on_the_trunk(rng):
    net = mf.models.FCN32s(n_class=2, widths=(2, 2, 2, 2, 2), fc_width=3,
                           dtype=numpy.float64).eval()
    x = mf.Tensor(rng.standard_normal((1, 3, 20, 24)))
    scores = mf.models.rarefied_scores(net, x)
    # conv1_1 pads 100: 218 x 222 -> pools 109 x 111, 55 x 56, 28 x 28 -> conv5_3 14 x 14
    # -> pool5 at stride 1: 13 x 13 -> fc6 7x7 dilated 2 (reach 12): 1 x 1
    conv5 = stitch.conv5_features(net, x)
    assert conv5.shape[2:] == (14, 14)
    assert scores.shape == (1, 2, 1, 1)
    numpy.testing.assert_allclose(
        scores.numpy(), stitch.fcn32s_tail(net, conv5, rarefy=True).numpy(), rtol=0, atol=0)
