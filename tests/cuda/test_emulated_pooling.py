"""Max and average pooling (kernels/pooling.cu) on the CPU emulation against the NumPy contract."""
import numpy
import pytest

from minifcn.functions.pooling import pool_output_size
from minifcn.reference.pooling import (avg_pool_backward_numpy, avg_pool_forward_numpy,
                                       max_pool_backward_numpy, max_pool_forward_numpy)

from cuda_emulator import tolerance

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
]


def _window(geometry):
    n, c, height, width, kh, kw, sy, sx, ph, pw, ceil_mode = geometry
    out = (pool_output_size(height, kh, sy, ph, ceil_mode), pool_output_size(width, kw, sx, pw, ceil_mode))
    return (n, c, height, width), (kh, kw, sy, sx, ph, pw), out


def _inputs(rng, shape, dtype, kind):
    if kind == "ties":  # few distinct values: many windows hold their maximum twice
        return rng.integers(-2, 2, size=shape).astype(dtype)
    if kind == "minus-infinity":  # only padding-like values: argmax falls back to the first pixel
        return numpy.full(shape, -numpy.inf, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("kind", ["random", "ties", "minus-infinity"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_max_pool_matches_numpy(emulated_cuda, dtype, rng, geometry, kind):
    shape, window, out = _window(geometry)
    x = _inputs(rng, shape, dtype, kind)
    expected_y, expected_argmax = max_pool_forward_numpy(x, *window, *out)
    y, argmax = emulated_cuda.max_pool_forward(x, *window, *out)
    assert y.dtype == dtype and argmax.dtype == numpy.int32
    numpy.testing.assert_array_equal(y, expected_y)
    numpy.testing.assert_array_equal(argmax, expected_argmax)

    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = emulated_cuda.max_pool_backward(gy, argmax, *shape[2:], *window)
    assert gx.dtype == dtype and gx.shape == shape
    numpy.testing.assert_allclose(gx, max_pool_backward_numpy(gy, expected_argmax, *shape[2:], *window),
                                  **tolerance(dtype))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_avg_pool_matches_numpy_bit_for_bit(emulated_cuda, dtype, rng, geometry):
    # Same order of additions as the NumPy versions (see kernels/pooling.cu): equal, not close.
    shape, window, out = _window(geometry)
    x = rng.standard_normal(shape).astype(dtype)
    y = emulated_cuda.avg_pool_forward(x, *window, *out)
    assert y.dtype == dtype
    numpy.testing.assert_array_equal(y, avg_pool_forward_numpy(x, *window, *out))

    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = emulated_cuda.avg_pool_backward(gy, *shape[2:], *window)
    assert gx.dtype == dtype and gx.shape == shape
    numpy.testing.assert_array_equal(gx, avg_pool_backward_numpy(gy, *shape[2:], *window))
