"""The fillers: bilinear kernels against hand-computed values, upsampling a ramp exactly,
and the random fillers' scales."""
import math

import numpy
import pytest

import minifcn as mf
from minifcn import nn


def ramp_filter(ramp):
    return numpy.outer(ramp, ramp)


# size k -> the 1-D profile 1 - |i - c| / f, worked out by hand from f = (k + 1) // 2 and
# c = f - 1 (k odd) or f - 0.5 (k even)
HAND_PROFILES = {
    3: [0.5, 1.0, 0.5],                                              # f 2, c 1
    4: [0.25, 0.75, 0.75, 0.25],                                     # f 2, c 1.5
    16: [i / 16 for i in (1, 3, 5, 7, 9, 11, 13, 15, 15, 13, 11, 9, 7, 5, 3, 1)],  # f 8, c 7.5
    64: [(2 * i + 1) / 64 for i in range(32)] + [(63 - 2 * i) / 64 for i in range(32)],
    63: [(i + 1) / 32 for i in range(32)] + [(31 - i) / 32 for i in range(31)],  # f 32, c 31
}


@pytest.mark.parametrize("size", sorted(HAND_PROFILES))
def test_bilinear_kernel_matches_hand_values(size):
    weight = nn.bilinear_kernel(3, 3, size, dtype=numpy.float64)
    assert weight.shape == (3, 3, size, size)
    expected = ramp_filter(numpy.array(HAND_PROFILES[size]))
    for i in range(3):
        numpy.testing.assert_allclose(weight[i, i], expected, rtol=0, atol=1e-15)
    off_diagonal = weight.copy()
    off_diagonal[range(3), range(3)] = 0
    assert not off_diagonal.any()


def test_bilinear_kernel_k4_explicit():
    # the 4x4 kernel of every FCN 2x upsampling, written out
    expected = numpy.array([[1, 3, 3, 1], [3, 9, 9, 3], [3, 9, 9, 3], [1, 3, 3, 1]]) / 16
    numpy.testing.assert_array_equal(nn.bilinear_kernel(1, 1, 4, dtype=numpy.float64)[0, 0],
                                     expected)


def test_bilinear_kernel_per_group_and_errors():
    grouped = nn.bilinear_kernel(4, 1, 4)  # a depthwise (groups = 4) deconvolution
    assert grouped.dtype == numpy.float32
    for i in range(4):
        numpy.testing.assert_allclose(grouped[i, 0], nn.bilinear_filter(4))
    with pytest.raises(ValueError, match="bilinear_kernel"):
        nn.bilinear_kernel(3, 2, 4)


@pytest.mark.parametrize("stride, kernel", [(2, 4), (8, 16), (32, 64), (32, 63), (3, 6)])
def test_fixed_bilinear_deconv_upsamples_a_ramp_exactly(stride, kernel):
    """Interpolation reproduces a linear function wherever an output has both neighbours."""
    height, width = 5, 4
    rows, cols = numpy.mgrid[0:height, 0:width].astype(numpy.float64)
    x = numpy.stack([3.0 * rows - 2.0 * cols + 1.0, 0.5 * rows + cols])[None]  # 2 channels
    layer = nn.ConvTranspose2d(2, 2, kernel, stride=stride, dtype=numpy.float64)
    assert layer.weight.lr_mult == 0 and not layer.weight.requires_grad
    y = layer(mf.Tensor(x)).numpy()[0]
    # input cell i lands at output centre c + s i, c the filter's centre
    centre = (kernel - 1) / 2 if kernel % 2 == 0 else (kernel + 1) // 2 - 1
    out_rows, out_cols = numpy.mgrid[0:y.shape[1], 0:y.shape[2]].astype(numpy.float64)
    at_rows, at_cols = (out_rows - centre) / stride, (out_cols - centre) / stride
    interior = ((at_rows >= 0) & (at_rows <= height - 1) & (at_cols >= 0) & (at_cols <= width - 1))
    assert interior.sum() > 0
    numpy.testing.assert_allclose(y[0][interior], (3.0 * at_rows - 2.0 * at_cols + 1.0)[interior],
                                  atol=1e-12)
    numpy.testing.assert_allclose(y[1][interior], (0.5 * at_rows + at_cols)[interior], atol=1e-12)


def test_random_fillers_have_their_scales():
    shape = (256, 64, 3, 3)  # fan_in 576
    mf.seed(0)
    msra = nn.fill("msra", shape)
    assert msra.dtype == numpy.float32 and msra.shape == shape
    assert abs(msra.std() / math.sqrt(2 / 576) - 1) < 0.02 and abs(msra.mean()) < 2e-3
    gaussian = nn.fill("gaussian", shape, numpy.float64)
    assert gaussian.dtype == numpy.float64 and abs(gaussian.std() / 0.01 - 1) < 0.02
    xavier = nn.fill("xavier", shape)
    bound = math.sqrt(3 / 576)
    assert xavier.min() >= -bound and xavier.max() < bound
    assert abs(xavier.std() / math.sqrt(1 / 576) - 1) < 0.02
    assert not nn.fill("zero", shape).any()


def test_fillers_follow_the_seed_and_reject_bad_names():
    mf.seed(3)
    first = nn.fill("msra", (4, 5))
    mf.seed(3)
    numpy.testing.assert_array_equal(first, nn.fill("msra", (4, 5)))
    with pytest.raises(ValueError, match="unknown init 'he'"):
        nn.fill("he", (4, 5))
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.fill("zero", (4, 5), numpy.int32)
