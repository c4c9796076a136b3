"""im2col and col2im (kernels/im2col.cu) on the CPU emulation against the NumPy contract,
with one output per thread and with runs of 4 (which large launches take: forced here),
in float32, float64 and bf16. Bit for bit in every dtype: im2col copies, and col2im
adds in col2im_numpy's order (in bf16: in float32, the total rounded once, as
stored_reference computes it)."""
import numpy
import pytest

from minifcn.reference.im2col import col2im_numpy, conv_output_size, im2col_numpy

from cuda_emulator import random_values, stored_reference

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
    (3, 10, 10, 7, 7, 1, 1, 0, 0, 1, 1),    # fc6-like: 7x7 on a small map, out 4 x 4
    (2, 11, 13, 3, 3, 1, 1, 1, 1, 1, 1),    # odd width 13: runs cut at the row's end
    (1, 12, 12, 5, 3, 2, 2, 2, 1, 2, 4),    # stride 2, dilation 2 and 4: gcd 2
    (2, 13, 14, 3, 2, 3, 2, 2, 3, 2, 3),    # stride 3 / dilation 2, stride 2 / dilation 3
    (1, 17, 15, 3, 3, 4, 6, 4, 3, 6, 4),    # stride 4 / dilation 6, stride 6 / dilation 4
    (1, 9, 10, 2, 3, 1, 3, 0, 2, 3, 1),     # stride 1 with dilation 3, stride 3
]


def _sizes(geometry):
    channels, height, width, kh, kw, sy, sx, ph, pw, dy, dx = geometry
    return (conv_output_size(height, kh, sy, ph, dy), conv_output_size(width, kw, sx, pw, dx))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_matches_numpy(emulated_cuda, storage, rng, geometry, run):
    channels, height, width, *window = geometry
    x = random_values(rng, (channels, height, width), storage)
    expected = stored_reference(im2col_numpy, x, *window, *_sizes(geometry))
    col = emulated_cuda.im2col(x, *window, *_sizes(geometry))
    assert col.dtype == storage and col.shape == expected.shape
    numpy.testing.assert_array_equal(col, expected)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_col2im_matches_numpy_bit_for_bit(emulated_cuda, storage, rng, geometry, run):
    # Same summation order as col2im_numpy (see kernels/im2col.cu), so equal, not close.
    channels, height, width, kh, kw, *steps = geometry
    col = random_values(rng, (channels, kh, kw, *_sizes(geometry)), storage)
    expected = stored_reference(col2im_numpy, col, height, width, *steps)
    x = emulated_cuda.col2im(col, height, width, *steps)
    assert x.dtype == storage and x.shape == (channels, height, width)
    numpy.testing.assert_array_equal(x, expected)


def test_im2col_takes_a_non_contiguous_image(emulated_cuda, rng):
    x = rng.standard_normal((3, 6, 8))[:, ::2, 1::2]
    numpy.testing.assert_array_equal(emulated_cuda.im2col(x, 3, 3, 1, 1, 1, 1, 1, 1, 3, 4),
                                     im2col_numpy(x, 3, 3, 1, 1, 1, 1, 1, 1, 3, 4))


@pytest.mark.parametrize("out_w", [8, 6, 5])  # 16-byte stores, pairs, single elements
def test_vector_store_paths(emulated_cuda, storage, rng, run, out_w):
    """im2col's rows of out_w and col2im's of the image width: every store path (bf16's
    8-byte fours and 4-byte pairs too), against NumPy, including rows that end inside a
    run."""
    x = random_values(rng, (2, 4, out_w), storage)
    col = emulated_cuda.im2col(x, 3, 3, 1, 1, 1, 1, 1, 1, 4, out_w)
    numpy.testing.assert_array_equal(col, stored_reference(im2col_numpy, x, 3, 3, 1, 1, 1, 1, 1, 1,
                                                           4, out_w))
    numpy.testing.assert_array_equal(emulated_cuda.col2im(col, 4, out_w, 1, 1, 1, 1, 1, 1),
                                     stored_reference(col2im_numpy, col, 4, out_w, 1, 1, 1, 1, 1, 1))


def test_col2im_of_a_random_geometry_matches_numpy(emulated_cuda, run):
    """Strides, dilations and paddings drawn at random, 20 of them: every (i, oy) pair
    visited exactly once, in NumPy's order."""
    rng = numpy.random.default_rng(12)
    for _ in range(20):
        kh, kw, sy, sx, dy, dx = (int(v) for v in rng.integers(1, [5, 5, 5, 5, 5, 5]))
        ph, pw = int(rng.integers(0, 4)), int(rng.integers(0, 4))
        height, width = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        out_h = conv_output_size(height, kh, sy, ph, dy)
        out_w = conv_output_size(width, kw, sx, pw, dx)
        if out_h < 1 or out_w < 1:
            continue
        col = rng.standard_normal((2, kh, kw, out_h, out_w))
        steps = (sy, sx, ph, pw, dy, dx)
        numpy.testing.assert_array_equal(emulated_cuda.col2im(col, height, width, *steps),
                                         col2im_numpy(col, height, width, *steps))
        x = rng.standard_normal((2, height, width))
        numpy.testing.assert_array_equal(emulated_cuda.im2col(x, kh, kw, *steps, out_h, out_w),
                                         im2col_numpy(x, kh, kw, *steps, out_h, out_w))


def test_grids_smaller_than_channels_and_taps(emulated_cuda, rng, run, monkeypatch):
    """Past CUDA's 65535 blocks in y and z the kernels loop over channels and taps: a
    limit of 2 here makes every thread take several."""
    monkeypatch.setattr(emulated_cuda, "GRID_YZ_LIMIT", 2)
    x = rng.standard_normal((5, 7, 9))
    col = emulated_cuda.im2col(x, 3, 2, 2, 1, 1, 1, 1, 2, 4, 8)
    numpy.testing.assert_array_equal(col, im2col_numpy(x, 3, 2, 2, 1, 1, 1, 1, 2, 4, 8))
    numpy.testing.assert_array_equal(emulated_cuda.col2im(col, 7, 9, 2, 1, 1, 1, 1, 2),
                                     col2im_numpy(col, 7, 9, 2, 1, 1, 1, 1, 2))
