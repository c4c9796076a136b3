"""The blocked convolution (functions/conv.py: tiles of output rows) equals the
unblocked one for tile heights that do and do not divide the output height, forward
and backward, for conv2d and conv_transpose2d, and passes the gradient check."""
import numpy
import pytest

import minifcn as mf
from minifcn import cuda, functions as F
from minifcn.functions import conv
from minifcn.gradcheck import check_backward

from .test_functions import TOLERANCE


@pytest.fixture(params=["numpy", "numba"])
def kernel_set(request):
    with mf.backend.use_cpu_kernels(request.param):
        yield request.param


def with_tile_rows(rows, fn, arrays):
    """Output and input gradients of fn with conv.tile_rows = rows (None: one tile)."""
    saved = conv.tile_rows
    conv.tile_rows = rows if rows is not None else 10**9
    try:
        leaves = [mf.Tensor(a.copy(), requires_grad=True) for a in arrays]
        y = fn(*leaves)
        y.backward(numpy.random.default_rng(0).standard_normal(y.shape).astype(y.dtype))
        return [y.data] + [t.grad for t in leaves]
    finally:
        conv.tile_rows = saved


# (x shape, weight shape, stride, padding, dilation, groups); out_h 9, 5, 7, 4
CONV_CASES = [((2, 3, 9, 8), (4, 3, 3, 3), 1, 1, 1, 1),
              ((2, 4, 11, 7), (6, 2, 3, 3), 2, 1, 1, 2),
              ((1, 2, 13, 9), (3, 2, 3, 2), (2, 1), 2, 2, 1),
              ((2, 3, 10, 10), (2, 3, 5, 4), 3, 3, 1, 1)]


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("tile_rows", [1, 2, 3, 4])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CONV_CASES)
def test_conv2d_tiles_equal_one_tile(kernel_set, x_shape, w_shape, stride, padding, dilation,
                                     groups, tile_rows, dtype):
    rng = numpy.random.default_rng(5)
    arrays = [rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, w_shape[:1])]
    fn = lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups)  # noqa: E731
    for got, expected in zip(with_tile_rows(tile_rows, fn, arrays),
                             with_tile_rows(None, fn, arrays)):
        numpy.testing.assert_allclose(got, expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("tile_rows", [1, 2, 3])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups",
                         [((2, 3, 5, 4), (3, 2, 4, 4), 2, 1, 1),
                          ((1, 4, 7, 3), (4, 1, 3, 5), (3, 1), (2, 0), 2)])
def test_conv_transpose2d_tiles_equal_one_tile(kernel_set, x_shape, w_shape, stride, padding,
                                               groups, tile_rows, dtype):
    rng = numpy.random.default_rng(6)
    c_out = w_shape[1] * groups
    arrays = [rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, (c_out,))]
    fn = lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, groups)  # noqa: E731
    for got, expected in zip(with_tile_rows(tile_rows, fn, arrays),
                             with_tile_rows(None, fn, arrays)):
        numpy.testing.assert_allclose(got, expected, **TOLERANCE[dtype])


def test_tile_size_follows_the_buffer_budget(monkeypatch):
    """Without tile_rows, a tile's columns take about column_buffer_bytes, but at least
    min_tile_pixels output pixels; never more rows than the output has."""
    geo = conv.Geometry(3, 3, 1, 1, 1, 1, 1, 1, 1)
    x = numpy.zeros((64, 100, 100), numpy.float32)
    monkeypatch.setattr(conv, "column_buffer_bytes", 576 * 100 * 4 * 7)
    monkeypatch.setattr(conv, "min_tile_pixels", 1)
    kernels = mf.backend.kernels_for(x)
    tiles = conv._RowTiles(kernels, x, 576, 100, 100, geo)
    assert [rows for _, rows in tiles] == [7] * 14 + [2]
    assert tiles.buffer.nbytes == 576 * 7 * 100 * 4
    monkeypatch.setattr(conv, "min_tile_pixels", 1000)
    assert {rows for _, rows in conv._RowTiles(kernels, x, 576, 100, 100, geo)} == {10}
    monkeypatch.setattr(conv, "min_tile_pixels", 10**6)
    assert [rows for _, rows in conv._RowTiles(kernels, x, 576, 100, 100, geo)] == [100]


def test_a_kernel_set_without_row_tiles_gets_the_whole_image_and_no_buffer(monkeypatch):
    monkeypatch.setattr(conv, "column_buffer_bytes", 576 * 100 * 4 * 7)
    tiles = conv._RowTiles(cuda.KERNELS, numpy.zeros((64, 100, 100), numpy.float32), 576, 100, 100,
                           conv.Geometry(3, 3, 1, 1, 1, 1, 1, 1, 1))
    assert tiles.bounds == [(0, 100)] and tiles.buffer is None


@pytest.mark.parametrize("tile_rows", [1, 2])
def test_gradcheck_with_tiny_tiles(kernel_set, monkeypatch, tile_rows):
    monkeypatch.setattr(conv, "tile_rows", tile_rows)
    rng = numpy.random.default_rng(7)
    x, w, b = (rng.standard_normal(s) for s in ((2, 2, 5, 4), (3, 2, 3, 3), (3,)))
    check_backward(lambda x, w, b: F.conv2d(x, w, b, 1, 1), [x, w, b])
    x, w = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((2, 2, 4, 4))
    check_backward(lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), [x, w])


def test_a_strided_view_as_input_gives_the_contiguous_result(kernel_set, monkeypatch):
    """A view (here every other column) is made contiguous once, not per tile."""
    monkeypatch.setattr(conv, "tile_rows", 2)
    rng = numpy.random.default_rng(8)
    wide = rng.standard_normal((2, 3, 7, 12)).astype(numpy.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(numpy.float32)
    view, copy = wide[:, :, :, ::2], numpy.ascontiguousarray(wide[:, :, :, ::2])
    results = []
    for x in (view, copy):
        xt, wt = mf.Tensor(x, requires_grad=True), mf.Tensor(w, requires_grad=True)
        y = F.conv2d(xt, wt, padding=1)
        y.backward(numpy.ones(y.shape, numpy.float32))
        results.append((y.data, xt.grad, wt.grad))
    for got, expected in zip(*results):
        numpy.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("x_shape, w_shape, groups", [
    ((2, 3, 9, 9), (5, 3, 3, 3), 1),     # 49 pixels a tile > 5 channels: gW^T accumulated
    ((2, 4, 3, 3), (12, 2, 3, 3), 2),    # 1 pixel < 6 channels a group: gW accumulated as is
])
def test_weight_gradient_in_either_orientation_matches_plain_sums(x_shape, w_shape, groups):
    """gW[o, i, a, b] = sum over images and output pixels of gy[o] * x[i] at the offset
    (a, b), written as loops over the stride-1, unpadded correlation."""
    rng = numpy.random.default_rng(11)
    x = rng.standard_normal(x_shape)
    geo = conv.Geometry(*w_shape[2:], 1, 1, 0, 0, 1, 1, groups)
    out_h, out_w = x_shape[2] - w_shape[2] + 1, x_shape[3] - w_shape[3] + 1
    gy = rng.standard_normal((x_shape[0], w_shape[0], out_h, out_w))
    expected = numpy.zeros(w_shape)
    per_group_out, per_group_in = w_shape[0] // groups, w_shape[1]
    for o in range(w_shape[0]):
        g = o // per_group_out
        for i in range(per_group_in):
            for a in range(w_shape[2]):
                for b in range(w_shape[3]):
                    window = x[:, g * per_group_in + i, a:a + out_h, b:b + out_w]
                    expected[o, i, a, b] = numpy.sum(gy[:, o] * window)
    numpy.testing.assert_allclose(conv._weight_grad(x, gy, geo), expected, rtol=1e-12, atol=1e-12)
