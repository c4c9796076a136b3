"""Max and average pooling (kernels/pooling.cu) on the CPU emulation against the NumPy
contract, and max pooling with NaNs against plain loops that follow PyTorch's rule; in
float32, float64 and bf16 (against stored_reference: the reference in float32 on the
bf16 values, rounded once). Bit for bit where the kernel adds in the reference's order
(max forward, avg forward and backward); max backward's gradient sums (NumPy's
bincount adds in float64) within cuda_emulator.assert_close."""
import math

import numpy
import pytest

from minifcn.functions.pooling import pool_output_size
from minifcn.reference.pooling import (avg_pool_backward_numpy, avg_pool_forward_numpy,
                                       max_pool_backward_numpy, max_pool_forward_numpy,
                                       max_pool_offset_dtype)

from cuda_emulator import assert_close, random_values, stored, stored_reference, tolerance, values_of

# n, c, height, width, kh, kw, sy, sx, ph, pw, ceil_mode
GEOMETRIES = [
    (1, 1, 1, 1, 1, 1, 1, 1, 0, 0, False),   # 1x1
    (2, 3, 7, 5, 2, 2, 2, 2, 0, 0, True),    # VGG's pool on odd sizes: the last window overhangs
    (1, 2, 7, 5, 3, 3, 2, 2, 1, 1, True),    # ceil mode with padding (windows start in it)
    (1, 2, 8, 9, 3, 2, 3, 1, 2, 1, False),   # stride 3, pad 2
    (1, 2, 6, 7, 7, 5, 1, 2, 1, 2, True),    # kernel 7x5, larger than the image
    (1, 1, 5, 5, 5, 5, 1, 1, 0, 0, False),   # one global window
    (2, 1, 4, 4, 2, 2, 1, 1, 1, 1, True),    # overlapping stride-1 windows with padding
    (1, 3, 10, 3, 3, 3, 3, 3, 2, 2, True),   # ceil mode dropping a window that would start in the padding
    (1, 2, 6, 8, 3, 3, 2, 2, 1, 1, True),    # the last windows overhang the padding: not counted
    (2, 3, 9, 12, 2, 2, 2, 2, 0, 0, True),   # W % 4 == 0: gx in 16-byte stores
    (1, 2, 7, 10, 3, 2, 2, 2, 1, 0, False),  # W even: gx in pairs
    (1, 1, 17, 16, 16, 16, 1, 1, 0, 0, False),  # 256 cells: int32 offsets (the _wide kernels)
    (1, 1, 16, 17, 15, 17, 1, 1, 0, 0, False),  # 255 cells: the largest uint8 window
]


def _window(geometry):
    n, c, height, width, kh, kw, sy, sx, ph, pw, ceil_mode = geometry
    out = (pool_output_size(height, kh, sy, ph, ceil_mode), pool_output_size(width, kw, sx, pw, ceil_mode))
    return (n, c, height, width), (kh, kw, sy, sx, ph, pw), out


def _inputs(rng, shape, dtype, kind):
    if kind == "ties":  # few distinct values: many windows hold their maximum twice
        return stored(rng.integers(-2, 2, size=shape), dtype)
    if kind == "minus-infinity":  # only padding-like values: argmax falls back to the first pixel
        return stored(numpy.full(shape, -numpy.inf), dtype)
    x = rng.standard_normal(shape)
    if kind == "nan":  # NaN in some windows, twice in some, next to +-inf in others
        for value, share in ((numpy.nan, 0.15), (numpy.inf, 0.05), (-numpy.inf, 0.05)):
            x[rng.random(shape) < share] = value
        x.reshape(-1)[-1] = numpy.nan  # at least one
    return stored(x, dtype)


def max_pool_loops(x, kh, kw, sy, sx, ph, pw, out_h, out_w):
    """(y, offsets) by plain loops, PyTorch's rule: a cell is taken when it is larger than
    the best so far, or NaN while the best is not (so a NaN anywhere gives NaN, and the
    first NaN in scan order takes the gradient); the first real cell starts the scan."""
    n, c, height, width = x.shape
    y = numpy.empty((n, c, out_h, out_w), x.dtype)
    offsets = numpy.empty(y.shape, numpy.int64)
    for plane in numpy.ndindex(n, c):
        for oy in range(out_h):
            for ox in range(out_w):
                top, left = oy * sy - ph, ox * sx - pw
                best, where = None, None
                for h in range(max(top, 0), min(top + kh, height)):
                    for w in range(max(left, 0), min(left + kw, width)):
                        value = x[plane][h, w]
                        if best is None or value > best or (math.isnan(value) and not math.isnan(best)):
                            best, where = value, (h - top) * kw + w - left
                y[plane][oy, ox], offsets[plane][oy, ox] = best, where
    return y, offsets


@pytest.mark.parametrize("kind", ["random", "ties", "minus-infinity", "nan"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_max_pool_matches_numpy(emulated_cuda, storage, rng, geometry, kind, run):
    shape, window, out = _window(geometry)
    x = _inputs(rng, shape, storage, kind)
    expected_y, expected_argmax = stored_reference(max_pool_forward_numpy, x, *window, *out)
    y, argmax = emulated_cuda.max_pool_forward(x, *window, *out)
    assert y.dtype == storage and argmax.dtype == max_pool_offset_dtype(*window[:2])
    assert argmax.dtype == (numpy.uint8 if window[0] * window[1] <= 255 else numpy.int32)
    numpy.testing.assert_array_equal(y, expected_y)
    numpy.testing.assert_array_equal(argmax, expected_argmax)
    if kind == "nan":  # the kernel and the reference both against PyTorch's rule
        loop_y, loop_offsets = max_pool_loops(values_of(x), *window, *out)
        numpy.testing.assert_array_equal(values_of(y), loop_y)
        numpy.testing.assert_array_equal(argmax, loop_offsets)
        assert numpy.isnan(values_of(y)).any()

    gy = random_values(rng, y.shape, storage)
    gx = emulated_cuda.max_pool_backward(gy, argmax, *shape[2:], *window)
    assert gx.dtype == storage and gx.shape == shape
    assert_close(gx, stored_reference(max_pool_backward_numpy, gy, expected_argmax, *shape[2:], *window))


def test_max_pool_nan_by_hand(emulated_cuda):
    """Issue 14's case: [1, nan, 0, 0] pools to NaN (it gave 1), its gradient goes to the
    NaN; two NaNs: the first; NaN next to +inf: still NaN."""
    x = numpy.array([[[[1, numpy.nan, 0, 0, numpy.nan, numpy.nan, numpy.inf, numpy.nan]]]])
    y, argmax = emulated_cuda.max_pool_forward(x, 1, 2, 1, 2, 0, 0, 1, 4)
    numpy.testing.assert_array_equal(y, [[[[numpy.nan, 0, numpy.nan, numpy.nan]]]])
    numpy.testing.assert_array_equal(argmax, [[[[1, 0, 0, 1]]]])
    gx = emulated_cuda.max_pool_backward(numpy.array([[[[1.0, 2, 3, 4]]]]), argmax, 1, 8,
                                         1, 2, 1, 2, 0, 0)
    numpy.testing.assert_array_equal(gx, [[[[0, 1, 2, 0, 3, 0, 0, 4]]]])


def test_max_pool_backward_refuses_a_flat_index_argmax(emulated_cuda, rng):
    gy = rng.standard_normal((1, 1, 2, 2))
    with pytest.raises(ValueError, match="argmax must be uint8"):
        emulated_cuda.max_pool_backward(gy, numpy.zeros((1, 1, 2, 2), numpy.int32), 4, 4,
                                        2, 2, 2, 2, 0, 0)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_avg_pool_matches_numpy_bit_for_bit(emulated_cuda, storage, rng, geometry, run):
    # Same order of additions as the NumPy versions (see kernels/pooling.cu): equal, not close.
    shape, window, out = _window(geometry)
    x = random_values(rng, shape, storage)
    y = emulated_cuda.avg_pool_forward(x, *window, *out)
    assert y.dtype == storage
    numpy.testing.assert_array_equal(y, stored_reference(avg_pool_forward_numpy, x, *window, *out))

    gy = random_values(rng, y.shape, storage)
    gx = emulated_cuda.avg_pool_backward(gy, *shape[2:], *window)
    assert gx.dtype == storage and gx.shape == shape
    numpy.testing.assert_array_equal(gx, stored_reference(avg_pool_backward_numpy, gy, *shape[2:],
                                                          *window))


def test_grids_smaller_than_the_planes(emulated_cuda, rng, run, monkeypatch):
    """Past CUDA's 65535 blocks in z the kernels loop over planes: a limit of 2 here
    makes every thread take several."""
    monkeypatch.setattr(emulated_cuda, "GRID_YZ_LIMIT", 2)
    shape, window, out = _window((2, 3, 7, 8, 3, 2, 2, 2, 1, 0, True))
    x = rng.standard_normal(shape)
    y, argmax = emulated_cuda.max_pool_forward(x, *window, *out)
    expected_y, expected_argmax = max_pool_forward_numpy(x, *window, *out)
    numpy.testing.assert_array_equal(y, expected_y)
    numpy.testing.assert_array_equal(argmax, expected_argmax)
    gy = rng.standard_normal(y.shape)
    numpy.testing.assert_allclose(emulated_cuda.max_pool_backward(gy, argmax, *shape[2:], *window),
                                  max_pool_backward_numpy(gy, argmax, *shape[2:], *window),
                                  **tolerance(gy.dtype))
    numpy.testing.assert_array_equal(emulated_cuda.avg_pool_forward(x, *window, *out),
                                     avg_pool_forward_numpy(x, *window, *out))
    numpy.testing.assert_array_equal(emulated_cuda.avg_pool_backward(gy, *shape[2:], *window),
                                     avg_pool_backward_numpy(gy, *shape[2:], *window))
