"""max_pool2d and avg_pool2d against Caffe's pooling written as loops."""
import itertools

import numpy
import pytest

import minifcn as mf
from minifcn import functions as F
from minifcn.gradcheck import check_backward

from .reference import (avg_pool2d_ref, caffe_pool_out_size, max_pool2d_backward_ref,
                        max_pool2d_ref, torch_pool_out_size)

# (x shape, kernel, stride, padding); every case runs with ceil_mode off and on.
POOL_CASES = [
    ((2, 3, 6, 6), 2, 2, 0),            # VGG's pool: 2x2 stride 2
    ((2, 2, 7, 5), 2, 2, 0),            # odd sizes: ceil mode adds a clipped window
    ((1, 2, 5, 7), 3, 2, 1),            # windows that hit the padding
    ((2, 1, 9, 8), (3, 2), (2, 3), (1, 1)),
    ((1, 2, 4, 5), 3, 1, 2),            # padding 2, stride 1: heavy overlap
    ((1, 1, 7, 7), 7, 3, 3),            # kernel 7, stride 3, padding 3
    ((1, 2, 3, 4), 1, 2, 0),            # 1x1 windows, stride 2
    ((2, 1, 7, 4), 3, 3, 2),            # ceil: the last window would start in the padding
    ((2, 1, 6, 3), 4, 3, 2),
    ((1, 1, 2, 2), 3, 3, 1),
    ((1, 2, 10, 1), (4, 1), (3, 1), (3, 0)),
]
IDS = [f"x{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}".replace(" ", "") for c in POOL_CASES]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _distinct(rng, shape):
    """Values 0.05 apart in random order: no ties, and a 1e-3 step never reorders them."""
    size = int(numpy.prod(shape))
    return (rng.permutation(size) * 0.05 - size * 0.025).reshape(shape)


# ------------------------------------------------------------------ output size
def test_pool_output_size_caffe_and_torch_formulas_agree_with_the_op():
    """Exhaustive over small sizes: floor mode and Caffe's ceil mode, the Caffe formula,
    PyTorch's documented one (integer arithmetic) and the op's output shape all agree."""
    checked = 0
    for size, kernel, stride, ceil_mode in itertools.product(range(1, 10), range(1, 6), range(1, 4),
                                                             (False, True)):
        for pad in range(kernel):
            if kernel > size + 2 * pad:
                continue
            caffe = caffe_pool_out_size(size, kernel, stride, pad, ceil_mode)
            torch = torch_pool_out_size(size, kernel, stride, pad, ceil_mode)
            assert caffe == torch, (size, kernel, stride, pad, ceil_mode)
            # every window starts inside the input or its left/top padding
            assert (caffe - 1) * stride - pad < size
            y = F.max_pool2d(mf.Tensor(numpy.zeros((1, 1, size, 1))), (kernel, 1), (stride, 1),
                             (pad, 0), ceil_mode=ceil_mode)
            assert y.shape == (1, 1, caffe, 1), (size, kernel, stride, pad, ceil_mode)
            checked += 1
    assert checked > 500


@pytest.mark.parametrize("size, kernel, stride, pad, floor_out, ceil_out", [
    (7, 2, 2, 0, 3, 4),      # odd input: ceil adds the clipped last window
    (6, 2, 2, 0, 3, 3),
    (5, 3, 2, 1, 3, 3),
    (6, 4, 3, 2, 3, 3),      # the third window starts at row 3*2-2 = 4 < 6
    (7, 3, 3, 2, 3, 3),      # ceil((7+4-3)/3)+1 = 4, but window 4 would start at row 9-2 = 7 >= H
    (2, 3, 3, 1, 1, 1),      # ceil((2+2-3)/3)+1 = 2, but window 2 would start at row 2 >= H
    (500, 2, 2, 0, 250, 250),
    (111, 2, 2, 0, 55, 56),
])
def test_pool_output_size_by_hand(size, kernel, stride, pad, floor_out, ceil_out):
    x = mf.Tensor(numpy.zeros((1, 1, size, 3)))
    assert F.max_pool2d(x, (kernel, 1), (stride, 1), (pad, 0)).shape[2] == floor_out
    assert F.avg_pool2d(x, (kernel, 1), (stride, 1), (pad, 0), ceil_mode=True).shape[2] == ceil_out


# ------------------------------------------------------------------ max pooling
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES, ids=IDS)
def test_max_pool2d_forward_and_backward_match_loops(rng, x_shape, kernel, stride, padding, ceil_mode):
    x = rng.standard_normal(x_shape)
    xt = mf.Tensor(x, requires_grad=True)
    y = F.max_pool2d(xt, kernel, stride, padding, ceil_mode)
    expected, argmax = max_pool2d_ref(x, kernel, stride, padding, ceil_mode)
    assert y.shape == expected.shape
    numpy.testing.assert_array_equal(y.data, expected)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    numpy.testing.assert_allclose(xt.grad, max_pool2d_backward_ref(gy, argmax, x_shape), rtol=1e-12)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES, ids=IDS)
def test_max_pool2d_gradcheck(rng, x_shape, kernel, stride, padding, ceil_mode):
    check_backward(lambda x: F.max_pool2d(x, kernel, stride, padding, ceil_mode),
                   [_distinct(rng, x_shape)])


def test_max_pool2d_stride_defaults_to_kernel(rng):
    x = rng.standard_normal((1, 1, 6, 9))
    numpy.testing.assert_array_equal(F.max_pool2d(mf.Tensor(x), 3).data,
                                     F.max_pool2d(mf.Tensor(x), 3, 3).data)
    assert F.max_pool2d(mf.Tensor(x), 3).shape == (1, 1, 2, 3)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES, ids=IDS)
def test_max_pool2d_ties_send_the_gradient_to_the_first_max(rng, x_shape, kernel, stride, padding,
                                                          ceil_mode):
    """Integers in a tiny range: most windows hold several maxima."""
    x = rng.integers(0, 2, x_shape).astype(numpy.float64)
    xt = mf.Tensor(x, requires_grad=True)
    y = F.max_pool2d(xt, kernel, stride, padding, ceil_mode)
    expected, argmax = max_pool2d_ref(x, kernel, stride, padding, ceil_mode)
    numpy.testing.assert_array_equal(y.data, expected)
    gy = numpy.arange(1.0, y.size + 1).reshape(y.shape)  # distinct: a wrong routing shows
    y.backward(gy)
    numpy.testing.assert_array_equal(xt.grad, max_pool2d_backward_ref(gy, argmax, x_shape))


def test_max_pool2d_ties_by_hand():
    """A constant 4x4 plane, 3x3 windows, stride 1, padding 1: every window's gradient
    goes to its first real pixel in scan order, (max(r-1, 0), max(c-1, 0)). Rows 0 and 1
    of windows both start at row 0, so row 0 takes 2, rows 1 and 2 take 1, row 3 none."""
    x = mf.Tensor(numpy.zeros((1, 1, 4, 4)), requires_grad=True)
    y = F.max_pool2d(x, 3, 1, 1)
    y.backward(numpy.ones((1, 1, 4, 4)))
    expected = numpy.array([[4, 2, 2, 0],
                            [2, 1, 1, 0],
                            [2, 1, 1, 0],
                            [0, 0, 0, 0]], dtype=float)
    numpy.testing.assert_array_equal(x.grad[0, 0], expected)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES, ids=IDS)
def test_max_pool2d_propagates_nan_like_pytorch(rng, x_shape, kernel, stride, padding, ceil_mode):
    """NaNs (some windows hold two, some next to +-inf): y is NaN wherever a window holds
    one, and its gradient goes to the window's first NaN (issue 14)."""
    x = rng.standard_normal(x_shape)
    for value, share in ((numpy.nan, 0.2), (numpy.inf, 0.05), (-numpy.inf, 0.05)):
        x[rng.random(x_shape) < share] = value
    x.reshape(-1)[0] = numpy.nan
    xt = mf.Tensor(x, requires_grad=True)
    y = F.max_pool2d(xt, kernel, stride, padding, ceil_mode)
    expected, argmax = max_pool2d_ref(x, kernel, stride, padding, ceil_mode)
    numpy.testing.assert_array_equal(y.data, expected)
    assert numpy.isnan(y.data).any()
    gy = numpy.arange(1.0, y.size + 1).reshape(y.shape)  # distinct: a wrong routing shows
    y.backward(gy)
    numpy.testing.assert_array_equal(xt.grad, max_pool2d_backward_ref(gy, argmax, x_shape))


def test_max_pool2d_nan_by_hand():
    """Issue 14: [1, nan, 0, 0] pooled by 2 gave [1, 0]; PyTorch gives [nan, 0]."""
    x = mf.Tensor(numpy.array([[[[1.0, numpy.nan, 0, 0, numpy.nan, numpy.nan]]]]),
                  requires_grad=True)
    y = F.max_pool2d(x, (1, 2))
    numpy.testing.assert_array_equal(y.data, [[[[numpy.nan, 0, numpy.nan]]]])
    y.backward(numpy.array([[[[1.0, 2, 3]]]]))
    numpy.testing.assert_array_equal(x.grad, [[[[0, 1, 2, 0, 3, 0]]]])


def test_max_pool2d_padding_never_wins_over_negative_values():
    x = numpy.full((1, 1, 3, 3), -5.0)
    x[0, 0, 1, 1] = -7.0
    y = F.max_pool2d(mf.Tensor(x), 2, 2, 1, ceil_mode=True)
    numpy.testing.assert_array_equal(y.data, numpy.full((1, 1, 2, 2), -5.0))


@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES[:5], ids=IDS[:5])
def test_max_pool2d_float32_agrees_with_float64(rng, x_shape, kernel, stride, padding):
    x = _distinct(rng, x_shape)
    grads = {}
    for dtype in (numpy.float32, numpy.float64):
        xt = mf.Tensor(x.astype(dtype), requires_grad=True)
        y = F.max_pool2d(xt, kernel, stride, padding, ceil_mode=True)
        assert y.dtype == dtype
        y.backward(numpy.ones(y.shape, dtype))
        grads[dtype] = (y.data, xt.grad)
    for low, high in zip(grads[numpy.float32], grads[numpy.float64]):
        numpy.testing.assert_allclose(low, high, rtol=1e-6)


# ------------------------------------------------------------------ avg pooling
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES, ids=IDS)
def test_avg_pool2d_forward_matches_caffe_loops(rng, x_shape, kernel, stride, padding, ceil_mode):
    x = rng.standard_normal(x_shape)
    y = F.avg_pool2d(mf.Tensor(x), kernel, stride, padding, ceil_mode)
    expected = avg_pool2d_ref(x, kernel, stride, padding, ceil_mode)
    assert y.shape == expected.shape
    numpy.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES, ids=IDS)
def test_avg_pool2d_gradcheck(rng, x_shape, kernel, stride, padding, ceil_mode):
    check_backward(lambda x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode),
                   [rng.standard_normal(x_shape)])


def test_avg_pool2d_divisor_by_hand():
    """Ones, 3x3 windows, stride 2, padding 1 on 4x4, ceil mode (Caffe's AVE):
    out = ceil((4+2-3)/2)+1 = 3 per axis. Rows: window 0 covers [-1, 2) -> 2 real of 3
    counted; window 1 [1, 4) -> 3 of 3; window 2 [3, 6) clipped to [3, 5) -> 1 real of 2."""
    y = F.avg_pool2d(mf.Tensor(numpy.ones((1, 1, 4, 4))), 3, 2, 1, ceil_mode=True)
    per_axis = numpy.array([2 / 3, 3 / 3, 1 / 2])
    numpy.testing.assert_allclose(y.data[0, 0], numpy.outer(per_axis, per_axis), rtol=1e-12)


def test_avg_pool2d_without_padding_is_a_plain_mean(rng):
    x = rng.standard_normal((2, 3, 6, 4))
    y = F.avg_pool2d(mf.Tensor(x), 2)
    numpy.testing.assert_allclose(y.data, x.reshape(2, 3, 3, 2, 2, 2).mean(axis=(3, 5)), rtol=1e-12)


@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES[:5], ids=IDS[:5])
def test_avg_pool2d_float32_agrees_with_float64(rng, x_shape, kernel, stride, padding):
    x = rng.standard_normal(x_shape)
    grads = {}
    for dtype in (numpy.float32, numpy.float64):
        xt = mf.Tensor(x.astype(dtype), requires_grad=True)
        y = F.avg_pool2d(xt, kernel, stride, padding, ceil_mode=True)
        assert y.dtype == dtype
        y.backward(numpy.ones(y.shape, dtype))
        assert xt.grad.dtype == dtype
        grads[dtype] = (y.data, xt.grad)
    for low, high in zip(grads[numpy.float32], grads[numpy.float64]):
        numpy.testing.assert_allclose(low, high, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_max_pool2d_all_minus_infinity_sends_the_gradient_to_the_first_real_pixel(ceil_mode):
    """Windows whose real pixels are all -inf tie with the padding: the gradient still goes
    to the window's first real pixel, never into the padding (or a neighbouring plane)."""
    x = numpy.full((2, 2, 3, 3), -numpy.inf)
    xt = mf.Tensor(x, requires_grad=True)
    y = F.max_pool2d(xt, 2, 2, 1, ceil_mode)
    assert numpy.all(y.data == -numpy.inf)
    gy = numpy.arange(1.0, y.size + 1).reshape(y.shape)
    y.backward(gy)
    _, argmax = max_pool2d_ref(x, 2, 2, 1, ceil_mode)
    numpy.testing.assert_array_equal(xt.grad, max_pool2d_backward_ref(gy, argmax, x.shape))


# ------------------------------------------------------ random geometries
def random_pool_geometry(rng):
    """Any valid pooling: kernel 1-5, stride 1-3, padding 0 to kernel-1, H, W 1-9."""
    kh, kw, sy, sx = (int(v) for v in rng.integers([1, 1, 1, 1], [6, 6, 4, 4]))
    ph, pw = int(rng.integers(0, kh)), int(rng.integers(0, kw))
    low_h, low_w = max(1, kh - 2 * ph), max(1, kw - 2 * pw)
    height, width = int(rng.integers(low_h, 10)), int(rng.integers(low_w, 10))
    x_shape = (int(rng.integers(1, 3)), int(rng.integers(1, 3)), height, width)
    return x_shape, (kh, kw), (sy, sx), (ph, pw), bool(rng.integers(0, 2))


@pytest.mark.parametrize("seed", range(30))
def test_pooling_random_geometry_matches_loops(seed):
    rng = numpy.random.default_rng(2000 + seed)
    x_shape, kernel, stride, padding, ceil_mode = random_pool_geometry(rng)
    x = _distinct(rng, x_shape)
    xt = mf.Tensor(x, requires_grad=True)
    y = F.max_pool2d(xt, kernel, stride, padding, ceil_mode)
    expected, argmax = max_pool2d_ref(x, kernel, stride, padding, ceil_mode)
    numpy.testing.assert_array_equal(y.data, expected)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    numpy.testing.assert_allclose(xt.grad, max_pool2d_backward_ref(gy, argmax, x_shape), rtol=1e-12)
    y = F.avg_pool2d(mf.Tensor(x), kernel, stride, padding, ceil_mode)
    numpy.testing.assert_allclose(y.data, avg_pool2d_ref(x, kernel, stride, padding, ceil_mode),
                                  rtol=1e-12, atol=1e-15)
    check_backward(lambda t: F.avg_pool2d(t, kernel, stride, padding, ceil_mode), [x])
