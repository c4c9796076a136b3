"""Kernel level: each numba kernel (minifcn.cpu) against its NumPy version, the
contract, on random inputs and geometries: odd sizes, stride 1-3, padding 0-3,
dilation 1-2, ceil mode, ties, ignored pixels, float32 and float64."""
import math

import numpy
import pytest

import minifcn.cpu as numba_kernels
from minifcn.functions.pooling import pool_output_size
from minifcn.reference import im2col as numpy_im2col
from minifcn.reference import loss as numpy_loss
from minifcn.reference import pooling as numpy_pooling

DTYPES = [numpy.float32, numpy.float64]
TOLERANCE = {numpy.float32: dict(rtol=1e-5, atol=1e-6), numpy.float64: dict(rtol=1e-12, atol=1e-12)}


def random_conv_geometry(rng):
    """(C, H, W) and (kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w) of any valid window."""
    kh, kw, sy, sx, dy, dx = (int(v) for v in rng.integers([1, 1, 1, 1, 1, 1], [5, 5, 4, 4, 3, 3]))
    ph, pw = (int(v) for v in rng.integers(0, 4, 2))
    height = int(rng.integers(max(1, dy * (kh - 1) + 1 - 2 * ph), 12))
    width = int(rng.integers(max(1, dx * (kw - 1) + 1 - 2 * pw), 12))
    out_h = (height + 2 * ph - dy * (kh - 1) - 1) // sy + 1
    out_w = (width + 2 * pw - dx * (kw - 1) - 1) // sx + 1
    return (int(rng.integers(1, 4)), height, width), (kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w)


def random_pool_geometry(rng):
    """(N, C, H, W) and (kh, kw, sy, sx, ph, pw, out_h, out_w), floor or ceil mode."""
    kh, kw, sy, sx = (int(v) for v in rng.integers([1, 1, 1, 1], [5, 5, 4, 4]))
    ph, pw = int(rng.integers(0, kh)), int(rng.integers(0, kw))
    height = int(rng.integers(max(1, kh - 2 * ph), 12))
    width = int(rng.integers(max(1, kw - 2 * pw), 12))
    ceil_mode = bool(rng.integers(0, 2))
    out_h = pool_output_size(height, kh, sy, ph, ceil_mode)
    out_w = pool_output_size(width, kw, sx, pw, ceil_mode)
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), height, width)
    return shape, (kh, kw, sy, sx, ph, pw, out_h, out_w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(12))
def test_im2col_and_col2im_match_numpy(seed, dtype):
    rng = numpy.random.default_rng(seed)
    shape, window = random_conv_geometry(rng)
    x = rng.standard_normal(shape).astype(dtype)
    col = numba_kernels.im2col(x, *window)
    numpy.testing.assert_array_equal(col, numpy_im2col.im2col_numpy(x, *window))
    strides = window[2:8]
    col = rng.standard_normal(col.shape).astype(dtype)
    # the same (i, j) order per pixel: the sums agree to the last bit
    numpy.testing.assert_array_equal(numba_kernels.col2im(col, *shape[1:], *strides),
                                     numpy_im2col.col2im_numpy(col, *shape[1:], *strides))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(8))
def test_tile_kernels_match_numpy_and_assemble_the_whole_image(seed, dtype):
    """Bands of output rows, written and added back tile by tile, give the whole-image
    columns and the whole-image col2im (overlapping rows collect both tiles' sums)."""
    rng = numpy.random.default_rng(100 + seed)
    shape, window = random_conv_geometry(rng)
    kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w = window
    x = rng.standard_normal(shape).astype(dtype)
    whole = numpy_im2col.im2col_numpy(x, *window)
    grad_col = rng.standard_normal(whole.shape).astype(dtype)
    tile = int(rng.integers(1, out_h + 1))
    image = {"numba": numpy.zeros(shape, dtype), "numpy": numpy.zeros(shape, dtype)}
    for first in range(0, out_h, tile):
        rows = min(tile, out_h - first)
        for _name, im2col_tile in (("numba", numba_kernels.im2col_tile),
                                  ("numpy", numpy_im2col.im2col_tile_numpy)):
            col = numpy.full((shape[0], kh, kw, rows, out_w), numpy.nan, dtype)
            im2col_tile(x, kh, kw, sy, sx, ph, pw, dy, dx, first, col)
            numpy.testing.assert_array_equal(col, whole[:, :, :, first: first + rows])
        band = numpy.ascontiguousarray(grad_col[:, :, :, first: first + rows])
        numba_kernels.col2im_tile(band, first, sy, sx, ph, pw, dy, dx, image["numba"])
        numpy_im2col.col2im_tile_numpy(band, first, sy, sx, ph, pw, dy, dx, image["numpy"])
    expected = numpy_im2col.col2im_numpy(grad_col, *shape[1:], sy, sx, ph, pw, dy, dx)
    numpy.testing.assert_array_equal(image["numba"], image["numpy"])
    numpy.testing.assert_allclose(image["numba"], expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(16))
def test_max_pool_matches_numpy_with_ties(seed, dtype):
    """Values drawn from {0, 1, 2} tie in most windows: the first maximum in scan order
    must be picked by both."""
    rng = numpy.random.default_rng(200 + seed)
    shape, window = random_pool_geometry(rng)
    x = rng.integers(0, 3, shape).astype(dtype) if seed % 2 else rng.standard_normal(shape).astype(dtype)
    y, argmax = numba_kernels.max_pool_forward(x, *window)
    expected_y, expected_argmax = numpy_pooling.max_pool_forward_numpy(x, *window)
    numpy.testing.assert_array_equal(y, expected_y)
    assert argmax.dtype == numpy.uint8 == expected_argmax.dtype  # windows here: <= 25 cells
    numpy.testing.assert_array_equal(argmax, expected_argmax)
    gy = rng.standard_normal(y.shape).astype(dtype)
    args = (gy, argmax, *shape[2:], *window[:6])
    numpy.testing.assert_allclose(numba_kernels.max_pool_backward(*args),
                                  numpy_pooling.max_pool_backward_numpy(*args), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window, argmax_dtype", [
    ((15, 17, 1, 1, 0, 0, 3, 2), numpy.uint8),   # 255 cells: the largest uint8 window
    ((16, 16, 1, 2, 1, 0, 5, 1), numpy.int32),   # 256 cells: int32 offsets
])
def test_max_pool_large_windows_and_nan_match_numpy(dtype, window, argmax_dtype):
    rng = numpy.random.default_rng(7)
    x = rng.standard_normal((2, 2, 17, 18)).astype(dtype)
    x[0, 0, 16, 5] = x[1, 1, 0, 0] = x[1, 1, 0, 1] = numpy.nan  # in some windows, not all
    y, argmax = numba_kernels.max_pool_forward(x, *window)
    expected_y, expected_argmax = numpy_pooling.max_pool_forward_numpy(x, *window)
    assert argmax.dtype == expected_argmax.dtype == argmax_dtype
    assert numpy.isnan(y).any() and not numpy.isnan(y).all()
    numpy.testing.assert_array_equal(y, expected_y)
    numpy.testing.assert_array_equal(argmax, expected_argmax)
    gy = rng.standard_normal(y.shape).astype(dtype)
    args = (gy, argmax, *x.shape[2:], *window[:6])
    numpy.testing.assert_allclose(numba_kernels.max_pool_backward(*args),
                                  numpy_pooling.max_pool_backward_numpy(*args), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_all_minus_infinity_goes_to_the_first_real_pixel(dtype):
    x = numpy.full((1, 2, 3, 3), -numpy.inf, dtype)
    window = (2, 2, 2, 2, 1, 1, 2, 2)
    for got, expected in zip(numba_kernels.max_pool_forward(x, *window),
                             numpy_pooling.max_pool_forward_numpy(x, *window)):
        numpy.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(16))
def test_avg_pool_matches_numpy(seed, dtype):
    rng = numpy.random.default_rng(300 + seed)
    shape, window = random_pool_geometry(rng)
    x = rng.standard_normal(shape).astype(dtype)
    numpy.testing.assert_allclose(numba_kernels.avg_pool_forward(x, *window),
                                  numpy_pooling.avg_pool_forward_numpy(x, *window),
                                  **TOLERANCE[dtype])
    gy = rng.standard_normal(shape[:2] + window[6:]).astype(dtype)
    args = (gy, *shape[2:], *window[:6])
    numpy.testing.assert_allclose(numba_kernels.avg_pool_backward(*args),
                                  numpy_pooling.avg_pool_backward_numpy(*args), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, ignored", [((1, 3, 5, 7), 0.0), ((2, 21, 33, 37), 0.3),
                                             ((2, 4, 3, 3), 1.0), ((1, 2, 1, 1500), 0.5)])
def test_softmax_cross_entropy_matches_numpy(shape, ignored, dtype):
    """Ignored pixels (255) add nothing; large scores do not overflow; a block of pixels
    that does not divide the image (1500 = 1024 + 476) is handled."""
    rng = numpy.random.default_rng(400)
    score = (rng.standard_normal(shape) * 30).astype(dtype)
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    target[rng.random(target.shape) < ignored] = 255
    loss_sum, count = numba_kernels.softmax_cross_entropy_forward(score, target, 255)
    expected_sum, expected_count = numpy_loss.softmax_cross_entropy_forward_numpy(score, target, 255)
    assert loss_sum.shape == count.shape == () and loss_sum.dtype == dtype
    assert int(count) == int(expected_count) == int((target != 255).sum())
    numpy.testing.assert_allclose(loss_sum, expected_sum, rtol=10 * TOLERANCE[dtype]["rtol"])
    coefficient = numpy.asarray(0.7, dtype)
    grad = numba_kernels.softmax_cross_entropy_backward(score, target, 255, coefficient)
    assert grad.dtype == dtype and grad.shape == shape
    numpy.testing.assert_allclose(
        grad, numpy_loss.softmax_cross_entropy_backward_numpy(score, target, 255, coefficient),
        **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, decay, grad_scale", [((7, 3, 3, 3), 5e-4, 1.0),
                                                      ((13,), 0.0, 0.5),
                                                      ((1001, 3), 1e-2, 1 / 3)])
def test_sgd_step_matches_numpy_over_steps(shape, decay, grad_scale, dtype):
    from minifcn.reference.solver import Segments, sgd_step_numpy
    rng = numpy.random.default_rng(3)
    size = int(numpy.prod(shape))
    segments, scalars = Segments([size], [1.0], [decay]), numpy.array([0.1, 0.9, grad_scale])
    param = rng.standard_normal(size).astype(dtype)
    history = numpy.zeros(size, dtype)
    expected_param, expected_history = param.copy(), history.copy()
    for _ in range(3):
        grad = rng.standard_normal(size).astype(dtype)
        kept = grad.copy()
        numba_kernels.sgd_step(param, grad, history, segments, scalars)
        sgd_step_numpy(expected_param, grad, expected_history, segments, scalars)
        numpy.testing.assert_array_equal(grad, kept)  # the gradient is left alone
    numpy.testing.assert_allclose(history, expected_history, **TOLERANCE[dtype])
    numpy.testing.assert_allclose(param, expected_param, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (3, 5, 7), (2, 17, 4, 9)])
@pytest.mark.parametrize("p, seed", [(0.1, 0), (0.5, 2**63 - 1), (0.9, 424242)])
def test_dropout_matches_numpy_bit_for_bit(shape, p, seed, dtype):
    from minifcn.reference.dropout import dropout_numpy
    x = numpy.random.default_rng(4).standard_normal(shape).astype(dtype)
    threshold, scale = math.ceil(p * 2**53), 1.0 / (1.0 - p)
    y = numba_kernels.dropout(x, seed, threshold, scale)
    assert y.dtype == dtype and y.shape == shape
    numpy.testing.assert_array_equal(y, dropout_numpy(x, seed, threshold, scale))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(6))
def test_winograd_transforms_match_numpy(seed, dtype):
    """The three transforms on a random band (any first tile row, the last band short,
    odd sizes so tiles hang over the edges, padding 0-2), into buffers whose rows are
    longer than the band, as functions/winograd.py lays them out."""
    from minifcn.functions import winograd
    from minifcn.reference import winograd as numpy_winograd
    rng = numpy.random.default_rng(seed)
    channels, out_channels = (int(v) for v in rng.integers(1, 5, 2))
    height, width = (int(v) for v in rng.integers(1, 12, 2))
    ph, pw = (int(v) for v in rng.integers(0, 3, 2))
    out_h, out_w = height + 2 * ph - 2, width + 2 * pw - 2
    if min(out_h, out_w) < 1:
        height, width = height + 3, width + 3
        out_h, out_w = height + 2 * ph - 2, width + 2 * pw - 2
    tile_rows, tile_cols = -(-out_h // 2), -(-out_w // 2)
    first = int(rng.integers(0, tile_rows))
    rows = int(rng.integers(1, tile_rows - first + 1))
    length = winograd._row_length(tile_rows * tile_cols, numpy.dtype(dtype).itemsize)
    x = rng.standard_normal((channels, height, width)).astype(dtype)
    gy = rng.standard_normal((out_channels, out_h, out_w)).astype(dtype)
    m = rng.standard_normal((out_channels, 16, length)).astype(dtype)
    bias = rng.standard_normal(out_channels).astype(dtype)
    tiles = rows * tile_cols
    for kernel, reference, args, out_shape in (
            ("winograd_input", numpy_winograd.winograd_input_numpy, (x, ph, pw, first, rows),
             (channels, 16, length)),
            ("winograd_gy", numpy_winograd.winograd_gy_numpy, (gy, first, rows),
             (out_channels, 16, length))):
        got, expected = numpy.zeros(out_shape, dtype), numpy.zeros(out_shape, dtype)
        getattr(numba_kernels, kernel)(*args, got)
        reference(*args, expected)
        numpy.testing.assert_allclose(got[:, :, :tiles], expected[:, :, :tiles], **TOLERANCE[dtype])
        assert not got[:, :, tiles:].any()  # nothing written past the band
    got, expected = (numpy.full((out_channels, out_h, out_w), 7.0, dtype) for _ in range(2))
    numba_kernels.winograd_output(m, first, rows, bias, got)
    numpy_winograd.winograd_output_numpy(m, first, rows, bias, expected)
    numpy.testing.assert_allclose(got, expected, **TOLERANCE[dtype])
    band = slice(2 * first, min(2 * (first + rows), out_h))
    assert (numpy.delete(got, numpy.r_[band], axis=1) == 7.0).all()  # only the band's rows
