"""conv2d, conv_transpose2d and linear against loop references, scipy and each other."""
import numpy
import pytest
from scipy import signal

import minifcn as mf
from minifcn import functions as F
from minifcn.gradcheck import check_backward

from .reference import conv2d_ref, conv_out_size, conv_transpose2d_ref, linear_ref

# (x shape, weight shape (C_out, C_in/g, kh, kw), stride, padding, dilation, groups)
CONV_CASES = [
    ((2, 3, 5, 7), (4, 3, 3, 3), 1, 0, 1, 1),
    ((2, 3, 7, 6), (2, 3, 1, 1), 1, 0, 1, 1),             # 1x1
    ((1, 2, 9, 8), (3, 2, 5, 3), 2, (2, 1), 1, 1),        # non-square kernel, stride 2
    ((2, 4, 6, 5), (6, 2, 3, 3), 3, 3, 1, 2),             # stride 3, padding 3, groups
    ((1, 2, 7, 7), (2, 2, 7, 7), 1, 3, 1, 1),             # kernel 7
    ((2, 2, 8, 9), (3, 2, 3, 3), 2, 1, 2, 1),             # dilation 2
    ((1, 6, 5, 6), (3, 2, 2, 4), (1, 3), (0, 2), 1, 3),   # even kernel, per-axis args
    ((2, 3, 4, 4), (5, 3, 4, 2), (3, 1), (1, 0), (1, 3), 1),
    ((1, 4, 6, 6), (4, 1, 3, 3), 1, 1, 1, 4),             # depthwise
    ((3, 1, 1, 1), (2, 1, 1, 1), 1, 0, 1, 1),             # one pixel
    ((1, 1, 2, 1), (2, 1, 3, 3), 1, 1, 1, 1),             # window reaches padding on all sides
    ((2, 2, 3, 5), (2, 2, 5, 5), 2, 1, 1, 1),             # window = the padded height
    ((1, 2, 9, 7), (2, 2, 3, 3), 2, 2, 2, 1),             # stride, padding and dilation
    ((2, 4, 7, 5), (4, 2, 3, 3), 2, 1, 1, 2),             # stride, padding and groups
]

# (x shape, weight shape (C_in, C_out/g, kh, kw), stride, padding, groups)
DECONV_CASES = [
    ((2, 3, 4, 5), (3, 2, 3, 3), 1, 0, 1),
    ((1, 2, 3, 3), (2, 3, 4, 4), 2, 1, 1),     # FCN's upscore2: 4/2
    ((2, 2, 2, 3), (2, 1, 3, 5), 3, (1, 2), 1),
    ((1, 4, 3, 2), (4, 1, 2, 2), 2, 0, 2),     # groups
    ((1, 2, 2, 2), (2, 2, 7, 7), 3, 3, 1),     # kernel 7, padding 3
    ((2, 1, 3, 3), (1, 2, 2, 3), (1, 2), 0, 1),
    ((1, 3, 4, 4), (3, 1, 1, 1), 1, 0, 3),
]


over_conv_cases = pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, dilation, groups", CONV_CASES,
    ids=[f"x{c[0]}-w{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}-g{c[5]}".replace(" ", "") for c in CONV_CASES])
over_deconv_cases = pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, groups", DECONV_CASES,
    ids=[f"x{c[0]}-w{c[1]}-s{c[2]}-p{c[3]}-g{c[4]}".replace(" ", "") for c in DECONV_CASES])


def _pair(v):
    return (v, v) if isinstance(v, int) else v


# The conv cases whose every row and column is used (H + 2p - d(k-1) - 1 divisible by s),
# so that the transposed convolution's output size gives back H.
ADJOINT_CASES = [c for c in CONV_CASES
                 if all((h + 2 * p - d * (k - 1) - 1) % s == 0 for h, k, s, p, d in zip(
                     c[0][2:], c[1][2:], _pair(c[2]), _pair(c[3]), _pair(c[4])))]


def _randn(rng, shape, dtype=numpy.float64):
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------- conv2d
@pytest.mark.parametrize("with_bias", [False, True])
@over_conv_cases
def test_conv2d_forward_matches_loops(rng, x_shape, w_shape, stride, padding, dilation, groups,
                                      with_bias):
    x, w = _randn(rng, x_shape), _randn(rng, w_shape)
    b = _randn(rng, w_shape[:1]) if with_bias else None
    y = F.conv2d(mf.Tensor(x), mf.Tensor(w), None if b is None else mf.Tensor(b),
                 stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected = conv2d_ref(x, w, b, stride, padding, dilation, groups)
    assert y.shape == expected.shape
    numpy.testing.assert_allclose(y.data, expected, rtol=1e-10, atol=1e-10)


@over_conv_cases
def test_conv2d_output_size_formula(x_shape, w_shape, stride, padding, dilation, groups):
    y = F.conv2d(mf.Tensor(numpy.zeros(x_shape)), mf.Tensor(numpy.zeros(w_shape)),
                 stride=stride, padding=padding, dilation=dilation, groups=groups)
    (sy, sx), (ph, pw), (dy, dx) = _pair(stride), _pair(padding), _pair(dilation)
    kh, kw = w_shape[2:]
    formula = ((x_shape[2] + 2 * ph - dy * (kh - 1) - 1) // sy + 1,
               (x_shape[3] + 2 * pw - dx * (kw - 1) - 1) // sx + 1)
    slid = (conv_out_size(x_shape[2], kh, sy, ph, dy), conv_out_size(x_shape[3], kw, sx, pw, dx))
    assert y.shape == (x_shape[0], w_shape[0]) + formula == (x_shape[0], w_shape[0]) + slid


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups",
                         [c for c in CONV_CASES if c[5] == 1])
def test_conv2d_forward_matches_scipy(rng, x_shape, w_shape, stride, padding, dilation, groups):
    """An independent route: pad, dilate the kernel with zeros, correlate 'valid',
    subsample by the stride."""
    x, w = _randn(rng, x_shape), _randn(rng, w_shape)
    (sy, sx), (ph, pw), (dy, dx) = _pair(stride), _pair(padding), _pair(dilation)
    xpad = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = w_shape[2:]
    dilated = numpy.zeros(w_shape[:2] + (dy * (kh - 1) + 1, dx * (kw - 1) + 1))
    dilated[:, :, ::dy, ::dx] = w
    expected = numpy.stack([
        numpy.stack([sum(signal.correlate(xpad[n, c], dilated[o, c], mode="valid")
                         for c in range(x_shape[1]))[::sy, ::sx]
                     for o in range(w_shape[0])])
        for n in range(x_shape[0])])
    y = F.conv2d(mf.Tensor(x), mf.Tensor(w), stride=stride, padding=padding, dilation=dilation)
    numpy.testing.assert_allclose(y.data, expected, rtol=1e-10, atol=1e-10)


@over_conv_cases
def test_conv2d_gradcheck(rng, x_shape, w_shape, stride, padding, dilation, groups):
    x, w, b = _randn(rng, x_shape), _randn(rng, w_shape), _randn(rng, w_shape[:1])
    check_backward(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), [x, w, b])


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CONV_CASES[:6])
def test_conv2d_float32_agrees_with_float64(rng, x_shape, w_shape, stride, padding, dilation, groups):
    x, w, b = _randn(rng, x_shape), _randn(rng, w_shape), _randn(rng, w_shape[:1])
    results = {}
    for dtype in (numpy.float32, numpy.float64):
        xt, wt, bt = (mf.Tensor(a.astype(dtype), requires_grad=True) for a in (x, w, b))
        y = F.conv2d(xt, wt, bt, stride, padding, dilation, groups)
        assert y.dtype == dtype
        y.backward(numpy.ones(y.shape, dtype))
        assert xt.grad.dtype == wt.grad.dtype == bt.grad.dtype == dtype
        results[dtype] = (y.data, xt.grad, wt.grad, bt.grad)
    for low, high in zip(results[numpy.float32], results[numpy.float64]):
        numpy.testing.assert_allclose(low, high, rtol=1e-4, atol=1e-4)


def test_conv2d_only_weight_needs_grad(rng):
    x = mf.Tensor(_randn(rng, (2, 3, 5, 5)))
    w = mf.Tensor(_randn(rng, (2, 3, 3, 3)), requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    y.backward(numpy.ones(y.shape))
    assert x.grad is None
    # d sum(y) / d w[o, c, i, j] = sum of the x pixels that tap (i, j) touches
    xpad = numpy.pad(x.data, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for i in range(3):
        for j in range(3):
            expected = xpad[:, :, i: i + 5, j: j + 5].sum(axis=(0, 2, 3))
            numpy.testing.assert_allclose(w.grad[0, :, i, j], expected, rtol=1e-12)
            numpy.testing.assert_allclose(w.grad[1, :, i, j], expected, rtol=1e-12)


# ----------------------------------------------------------- conv_transpose2d
@pytest.mark.parametrize("with_bias", [False, True])
@over_deconv_cases
def test_conv_transpose2d_forward_matches_loops(rng, x_shape, w_shape, stride, padding, groups,
                                                with_bias):
    x, w = _randn(rng, x_shape), _randn(rng, w_shape)
    b = _randn(rng, (w_shape[1] * groups,)) if with_bias else None
    y = F.conv_transpose2d(mf.Tensor(x), mf.Tensor(w), None if b is None else mf.Tensor(b),
                           stride=stride, padding=padding, groups=groups)
    expected = conv_transpose2d_ref(x, w, b, stride, padding, groups)
    (sy, sx), (ph, pw) = _pair(stride), _pair(padding)
    kh, kw = w_shape[2:]
    assert y.shape == expected.shape == (x_shape[0], w_shape[1] * groups,
                                         (x_shape[2] - 1) * sy - 2 * ph + kh,
                                         (x_shape[3] - 1) * sx - 2 * pw + kw)
    numpy.testing.assert_allclose(y.data, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", ADJOINT_CASES)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(rng, x_shape, w_shape, stride, padding, dilation,
                                                   groups):
    """<conv(x), y> == <x, deconv(y)> with the same weight (sizes chosen so the deconv
    output size (H-1)s - 2p + d(k-1) + 1 gives back H)."""
    x, w = _randn(rng, x_shape), _randn(rng, w_shape)
    conv_x = F.conv2d(mf.Tensor(x), mf.Tensor(w), stride=stride, padding=padding,
                      dilation=dilation, groups=groups).data
    y = _randn(rng, conv_x.shape)
    deconv_y = F.conv_transpose2d(mf.Tensor(y), mf.Tensor(w), stride=stride, padding=padding,
                                  groups=groups, dilation=dilation).data
    assert deconv_y.shape == x.shape
    numpy.testing.assert_allclose(numpy.vdot(conv_x, y), numpy.vdot(x, deconv_y), rtol=1e-10)


def test_adjoint_grid_covers_stride_padding_dilation_groups():
    assert len(ADJOINT_CASES) >= 5
    assert {c[5] for c in ADJOINT_CASES} > {1} and {c[4] for c in ADJOINT_CASES} > {1}
    assert any(c[2] != 1 for c in ADJOINT_CASES) and any(c[3] != 0 for c in ADJOINT_CASES)


@over_deconv_cases
def test_conv_transpose2d_gradcheck(rng, x_shape, w_shape, stride, padding, groups):
    x, w, b = _randn(rng, x_shape), _randn(rng, w_shape), _randn(rng, (w_shape[1] * groups,))
    check_backward(lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, groups), [x, w, b])


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups", DECONV_CASES[:4])
def test_conv_transpose2d_float32_agrees_with_float64(rng, x_shape, w_shape, stride, padding, groups):
    x, w = _randn(rng, x_shape), _randn(rng, w_shape)
    results = {}
    for dtype in (numpy.float32, numpy.float64):
        xt = mf.Tensor(x.astype(dtype), requires_grad=True)
        wt = mf.Tensor(w.astype(dtype), requires_grad=True)
        y = F.conv_transpose2d(xt, wt, stride=stride, padding=padding, groups=groups)
        assert y.dtype == dtype
        y.backward(numpy.ones(y.shape, dtype))
        results[dtype] = (y.data, xt.grad, wt.grad)
    for low, high in zip(results[numpy.float32], results[numpy.float64]):
        numpy.testing.assert_allclose(low, high, rtol=1e-4, atol=1e-4)


def test_conv_transpose2d_dilation_matches_loops(rng):
    x, w = _randn(rng, (1, 2, 3, 4)), _randn(rng, (2, 2, 3, 2))
    y = F.conv_transpose2d(mf.Tensor(x), mf.Tensor(w), stride=2, padding=1, dilation=(2, 3))
    numpy.testing.assert_allclose(
        y.data, conv_transpose2d_ref(x, w, None, 2, 1, 1, dilation=(2, 3)), rtol=1e-10, atol=1e-10)


def test_bilinear_upsampling_of_a_constant_is_constant_inside():
    """FCN's upscore2 (k=4, s=2, bilinear weights): a constant map stays constant away
    from the border, and doubles in size minus the crop (H-1)*2 - 2 + 4 = 2H."""
    factor = 2
    size = 2 * factor - factor % 2
    center = factor - 0.5
    og = numpy.arange(size)
    filt = (1 - abs(og - center) / factor)[:, None] * (1 - abs(og - center) / factor)[None, :]
    w = numpy.zeros((2, 2, size, size))
    w[0, 0] = w[1, 1] = filt
    x = numpy.full((1, 2, 5, 4), 3.0)
    y = F.conv_transpose2d(mf.Tensor(x), mf.Tensor(w), stride=factor, padding=1)
    assert y.shape == (1, 2, 10, 8)
    numpy.testing.assert_allclose(y.data[:, :, 1:-1, 1:-1], 3.0, rtol=1e-12)
    numpy.testing.assert_allclose(y.data[:, :, 0, 1:-1], 3.0 * 0.75, rtol=1e-12)


# --------------------------------------------------------------------- linear
@pytest.mark.parametrize("x_shape, n_out", [((3, 4), 5), ((1, 7), 1), ((2, 3, 2, 2), 4)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_forward_and_gradcheck(rng, x_shape, n_out, with_bias):
    features = int(numpy.prod(x_shape[1:]))
    x, w = _randn(rng, x_shape), _randn(rng, (n_out, features))
    b = _randn(rng, (n_out,)) if with_bias else None
    y = F.linear(mf.Tensor(x), mf.Tensor(w), None if b is None else mf.Tensor(b))
    assert y.shape == (x_shape[0], n_out)
    numpy.testing.assert_allclose(y.data, linear_ref(x, w, b), rtol=1e-12, atol=1e-12)
    if with_bias:
        check_backward(lambda x, w, b: F.linear(x, w, b), [x, w, b])
    else:
        check_backward(lambda x, w: F.linear(x, w), [x, w])


def test_linear_float32_agrees_with_float64(rng):
    x, w, b = _randn(rng, (3, 6)), _randn(rng, (4, 6)), _randn(rng, (4,))
    y32 = F.linear(*(mf.Tensor(a.astype(numpy.float32)) for a in (x, w, b)))
    y64 = F.linear(*(mf.Tensor(a) for a in (x, w, b)))
    assert y32.dtype == numpy.float32
    numpy.testing.assert_allclose(y32.data, y64.data, rtol=1e-5, atol=1e-5)


def test_linear_matches_a_1x1_convolution_of_the_flattened_input(rng):
    """fc6 as a convolution: linear on a (N, C, k, k) input equals conv2d with the
    weight reshaped to (M, C, k, k) (what convolutionalize relies on)."""
    x, w = _randn(rng, (2, 3, 2, 2)), _randn(rng, (5, 12))
    y_linear = F.linear(mf.Tensor(x), mf.Tensor(w)).data
    y_conv = F.conv2d(mf.Tensor(x), mf.Tensor(w.reshape(5, 3, 2, 2))).data
    numpy.testing.assert_allclose(y_linear, y_conv.reshape(2, 5), rtol=1e-12)


# ------------------------------------------------------ random geometries
def random_conv_geometry(rng):
    """Any valid geometry: kernel 1-6, stride 1-3, padding 0-3, dilation 1-2, groups 1-3."""
    groups = int(rng.integers(1, 4))
    kh, kw, sy, sx = (int(v) for v in rng.integers([1, 1, 1, 1], [7, 7, 4, 4]))
    ph, pw, dy, dx = (int(v) for v in rng.integers([0, 0, 1, 1], [4, 4, 3, 3]))
    low_h, low_w = max(1, dy * (kh - 1) + 1 - 2 * ph), max(1, dx * (kw - 1) + 1 - 2 * pw)
    height = int(rng.integers(low_h, max(low_h, 9) + 1))
    width = int(rng.integers(low_w, max(low_w, 9) + 1))
    x_shape = (int(rng.integers(1, 3)), groups * int(rng.integers(1, 3)), height, width)
    w_shape = (groups * int(rng.integers(1, 3)), x_shape[1] // groups, kh, kw)
    return x_shape, w_shape, (sy, sx), (ph, pw), (dy, dx), groups


@pytest.mark.parametrize("seed", range(40))
def test_conv2d_random_geometry_matches_loops_and_its_adjoint(seed):
    rng = numpy.random.default_rng(1000 + seed)
    x_shape, w_shape, stride, padding, dilation, groups = random_conv_geometry(rng)
    x, w, b = _randn(rng, x_shape), _randn(rng, w_shape), _randn(rng, w_shape[:1])
    y = F.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), stride, padding, dilation, groups)
    numpy.testing.assert_allclose(y.data, conv2d_ref(x, w, b, stride, padding, dilation, groups),
                                  rtol=1e-10, atol=1e-10)
    # conv2d's gradient with respect to x is the transposed convolution's scatter
    gy = _randn(rng, y.shape)
    xt = mf.Tensor(x, requires_grad=True)
    F.conv2d(xt, mf.Tensor(w), None, stride, padding, dilation, groups).backward(gy)
    numpy.testing.assert_allclose(
        xt.grad, conv_transpose2d_ref(gy, w, None, stride, padding, groups, dilation, x_shape[2:]),
        rtol=1e-10, atol=1e-10)
    # and conv_transpose2d itself, wherever its output (H-1)s - 2p + d(k-1) + 1 is not empty
    out_h, out_w = ((n - 1) * s - 2 * p + d * (k - 1) + 1 for n, s, p, d, k in
                    zip(y.shape[2:], stride, padding, dilation, w_shape[2:]))
    if min(out_h, out_w) >= 1:
        back = F.conv_transpose2d(mf.Tensor(gy), mf.Tensor(w), None, stride, padding, groups, dilation)
        numpy.testing.assert_allclose(
            back.data, conv_transpose2d_ref(gy, w, None, stride, padding, groups, dilation),
            rtol=1e-10, atol=1e-10)


def test_conv2d_accepts_numpy_integer_groups():
    x = mf.Tensor(numpy.arange(4 * 5 * 5, dtype=numpy.float64).reshape(1, 4, 5, 5))
    w = mf.Tensor(numpy.ones((2, 2, 3, 3)))
    as_int = F.conv2d(x, w, groups=2).data
    numpy.testing.assert_array_equal(F.conv2d(x, w, groups=numpy.int64(2)).data, as_int)
