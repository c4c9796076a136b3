"""kernels/elementwise.cu on the CPU emulation against the NumPy references
(minifcn/reference/elementwise.py): ReLU's backward, the bias gradient, the in-place
accumulation. Odd sizes; both index widths and a 2x3 grid (the emulated_cuda fixture)."""
import numpy
import pytest

from minifcn.reference.elementwise import accumulate_numpy, bias_grad_numpy, relu_backward_numpy

from cuda_emulator import tolerance


def _relu_output(rng, shape, dtype):
    y = numpy.maximum(rng.standard_normal(shape), 0).astype(dtype)
    y.reshape(-1)[::7] = 0.0  # exact zeros: no gradient through them
    return y


@pytest.mark.parametrize("shape", [(1,), (3, 5, 7), (2, 3, 17, 9)])
def test_relu_backward_matches_numpy(emulated_cuda, dtype, rng, shape):
    y = _relu_output(rng, shape, dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    gx = emulated_cuda.relu_backward(y, gy)
    assert gx.dtype == dtype and gx.shape == shape
    numpy.testing.assert_array_equal(gx, relu_backward_numpy(y, gy))
    numpy.testing.assert_array_equal(gx, numpy.where(y > 0, gy, 0))  # the math, directly


def test_relu_backward_takes_strided_gradients(emulated_cuda, rng):
    y = _relu_output(rng, (2, 3, 4, 5), numpy.float64)
    gy = rng.standard_normal((2, 3, 5, 4)).transpose(0, 1, 3, 2)
    numpy.testing.assert_array_equal(emulated_cuda.relu_backward(y, gy), numpy.where(y > 0, gy, 0))


# (N, C, H, W): one plane per channel, many splits per channel (a split crossing the
# planes), more channels than blocks wanted (one split), planes smaller than a block.
BIAS_SHAPES = [(1, 1, 1, 1), (1, 3, 5, 7), (2, 5, 33, 41), (3, 2, 1, 1), (5, 3, 3, 3),
               (1, 1100, 2, 1), (4, 2, 37, 29)]


@pytest.mark.parametrize("shape", BIAS_SHAPES)
def test_bias_grad_matches_numpy(emulated_cuda, dtype, rng, shape):
    gy = rng.standard_normal(shape).astype(dtype)
    gb = emulated_cuda.bias_grad(gy)
    assert gb.dtype == dtype and gb.shape == (shape[1],)
    numpy.testing.assert_allclose(gb, bias_grad_numpy(gy), **tolerance(dtype))
    loops = [sum(float(v) for v in gy[:, c].reshape(-1)) for c in range(shape[1])]  # plain loops
    numpy.testing.assert_allclose(gb, loops, **tolerance(dtype))


def test_bias_grad_splits_channels_by_size_only(emulated_cuda):
    assert emulated_cuda.bias_split_count(1, 64, 500 * 500) == 16  # 1024 blocks for 64 channels
    assert emulated_cuda.bias_split_count(8, 4096, 1) == 1
    assert emulated_cuda.bias_split_count(2, 3, 100) == 1  # 200 elements: one range
    assert emulated_cuda.bias_split_count(2, 3, 1537) == 4  # ranges of >= 1024 elements


def test_bias_grad_is_reproducible_bit_for_bit(emulated_cuda, rng):
    gy = rng.standard_normal((2, 3, 45, 51)).astype(numpy.float32)
    numpy.testing.assert_array_equal(emulated_cuda.bias_grad(gy), emulated_cuda.bias_grad(gy.copy()))


def test_bias_grad_of_an_empty_gradient_is_zero(emulated_cuda):
    numpy.testing.assert_array_equal(emulated_cuda.bias_grad(numpy.zeros((0, 4, 3, 3))), numpy.zeros(4))


@pytest.mark.parametrize("shape", [(1,), (3, 5, 7), (2, 3, 17, 9)])
def test_accumulate_adds_in_place(emulated_cuda, dtype, rng, shape):
    total = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    expected = accumulate_numpy(total.copy(), g)
    result = emulated_cuda.accumulate(total, g)
    assert result is total
    numpy.testing.assert_array_equal(total, expected)
    numpy.testing.assert_array_equal(total, (expected - g) + g)
