"""Crop (kernels/crop.cu) and LRN (kernels/lrn.cu) on the CPU emulation against the NumPy contract."""
import numpy
import pytest

from minifcn.reference.crop import crop_backward_numpy, crop_forward_numpy
from minifcn.reference.norm import lrn_backward_numpy, lrn_forward_numpy

from cuda_emulator import tolerance

# shape, (oy, ox), (h, w)
CROPS = [((1, 1, 1, 1), (0, 0), (1, 1)),
         ((2, 3, 7, 5), (1, 2), (4, 3)),
         ((1, 2, 6, 9), (0, 0), (6, 9)),      # nothing cropped
         ((2, 1, 40, 38), (19, 5), (21, 33))]  # FCN's `score` crop at offset 19


@pytest.mark.parametrize("shape, offset, size", CROPS)
def test_crop_matches_numpy(emulated_cuda, dtype, rng, shape, offset, size):
    x = rng.standard_normal(shape).astype(dtype)
    y = emulated_cuda.crop_forward(x, *offset, *size)
    numpy.testing.assert_array_equal(y, crop_forward_numpy(x, *offset, *size))
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = emulated_cuda.crop_backward(gy, *shape[2:], *offset)
    numpy.testing.assert_array_equal(gx, crop_backward_numpy(gy, *shape[2:], *offset))


def test_crop_backward_takes_a_broadcast_gradient(emulated_cuda):
    gy = numpy.broadcast_to(numpy.float32(2.0), (1, 2, 3, 3))  # what sum's backward hands over
    gx = emulated_cuda.crop_backward(gy, 5, 6, 1, 2)
    numpy.testing.assert_array_equal(gx, crop_backward_numpy(numpy.ascontiguousarray(gy), 5, 6, 1, 2))


# shape, size, alpha, beta, k
LRNS = [((1, 1, 1, 1), 5, 1e-4, 0.75, 1.0),
        ((2, 7, 3, 4), 5, 1e-4, 0.75, 1.0),   # AlexNet's
        ((1, 6, 5, 3), 2, 0.5, 0.6, 2.0),     # an even window
        ((2, 3, 2, 5), 7, 1.0, 0.75, 1.0),    # a window wider than the channels
        ((1, 4, 3, 3), 1, 0.3, 1.5, 0.5)]     # size 1: each channel alone


@pytest.mark.parametrize("shape, size, alpha, beta, k", LRNS)
def test_lrn_matches_numpy(emulated_cuda, dtype, rng, shape, size, alpha, beta, k):
    x = rng.standard_normal(shape).astype(dtype)
    y, scale = emulated_cuda.lrn_forward(x, size, alpha, beta, k)
    expected_y, expected_scale = lrn_forward_numpy(x, size, alpha, beta, k)
    assert y.dtype == dtype and scale.dtype == dtype
    numpy.testing.assert_allclose(scale, expected_scale, **tolerance(dtype))
    numpy.testing.assert_allclose(y, expected_y, **tolerance(dtype))

    gy = rng.standard_normal(shape).astype(dtype)
    gx = emulated_cuda.lrn_backward(x, y, scale, gy, size, alpha, beta)
    numpy.testing.assert_allclose(gx, lrn_backward_numpy(x, expected_y, expected_scale, gy, size, alpha, beta),
                                  **tolerance(dtype))
