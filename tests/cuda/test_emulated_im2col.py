"""im2col and col2im (kernels/im2col.cu) on the CPU emulation against the NumPy contract."""
import numpy
import pytest

from minifcn.reference.im2col import col2im_numpy, conv_output_size, im2col_numpy

# channels, height, width, kh, kw, sy, sx, ph, pw, dy, dx
GEOMETRIES = [
    (1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1),      # 1x1 everything
    (2, 7, 5, 3, 3, 1, 1, 1, 1, 1, 1),      # VGG's 3x3 pad 1 on odd sizes
    (3, 7, 5, 3, 2, 3, 2, 2, 1, 1, 1),      # stride 3, pad 2, rectangular kernel
    (2, 9, 8, 3, 3, 1, 2, 2, 2, 2, 2),      # dilation 2
    (1, 11, 10, 7, 5, 2, 3, 3, 0, 1, 3),    # kernel 7x5, mixed dilation
    (2, 6, 6, 4, 4, 2, 2, 1, 1, 1, 1),      # upscore2-like: kernel 4, stride 2
    (2, 16, 14, 8, 8, 4, 4, 0, 0, 1, 1),    # upscore-like: kernel 2s, stride s
    (1, 5, 6, 1, 1, 2, 2, 0, 0, 1, 1),      # floor rounding leaves pixels unused
    (2, 3, 3, 2, 2, 1, 1, 3, 3, 1, 1),      # padding wider than the kernel (conv1_1)
    (1, 4, 9, 6, 1, 3, 1, 2, 0, 1, 1),      # kernel as tall as the padded input
]


def _sizes(geometry):
    channels, height, width, kh, kw, sy, sx, ph, pw, dy, dx = geometry
    return (conv_output_size(height, kh, sy, ph, dy), conv_output_size(width, kw, sx, pw, dx))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_matches_numpy(emulated_cuda, dtype, rng, geometry):
    channels, height, width, *window = geometry
    x = rng.standard_normal((channels, height, width)).astype(dtype)
    expected = im2col_numpy(x, *window, *_sizes(geometry))
    col = emulated_cuda.im2col(x, *window, *_sizes(geometry))
    assert col.dtype == dtype and col.shape == expected.shape
    numpy.testing.assert_array_equal(col, expected)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_col2im_matches_numpy_bit_for_bit(emulated_cuda, dtype, rng, geometry):
    # Same summation order as col2im_numpy (see kernels/im2col.cu), so equal, not close.
    channels, height, width, kh, kw, *steps = geometry
    col = rng.standard_normal((channels, kh, kw, *_sizes(geometry))).astype(dtype)
    expected = col2im_numpy(col, height, width, *steps)
    x = emulated_cuda.col2im(col, height, width, *steps)
    assert x.dtype == dtype and x.shape == (channels, height, width)
    numpy.testing.assert_array_equal(x, expected)


def test_im2col_takes_a_non_contiguous_image(emulated_cuda, rng):
    x = rng.standard_normal((3, 6, 8))[:, ::2, 1::2]
    numpy.testing.assert_array_equal(emulated_cuda.im2col(x, 3, 3, 1, 1, 1, 1, 1, 1, 3, 4),
                                     im2col_numpy(x, 3, 3, 1, 1, 1, 1, 1, 1, 3, 4))
