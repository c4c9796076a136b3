"""kernels/elementwise.cu on the CPU emulation against the NumPy references
(minifcn/reference/elementwise.py): ReLU forward and backward, sums, the bias and its
gradient, the in-place accumulation and the float32 <-> bf16 cast. Odd sizes; both
index widths and a 2x3 grid (the emulated_cuda fixture); float32, float64 and bf16
(against stored_reference: the reference in float32 on the bf16 values, rounded once;
every kernel here rounds one float32 operation, or copies, so bit for bit)."""
import numpy
import pytest

from minifcn import bfloat16
from minifcn.reference.elementwise import (accumulate_numpy, add_bias_numpy, add_numpy,
                                           bias_grad_numpy, cast_numpy, relu_backward_numpy,
                                           relu_forward_numpy)

from cuda_emulator import random_values, stored, stored_reference, tolerance, values_of

SHAPES = [(1,), (3, 5, 7), (2, 3, 17, 9)]
# what ReLU must get right besides ordinary numbers: NaNs of both signs, infinities,
# signed zeros, denormals
SPECIAL = [numpy.nan, -numpy.nan, numpy.inf, -numpy.inf, 0.0, -0.0, 1e-40, -1e-40, 1.0, -1.0]


def _relu_output(rng, shape, dtype):
    y = numpy.maximum(rng.standard_normal(shape), 0)
    y.reshape(-1)[::7] = 0.0  # exact zeros: no gradient through them
    return stored(y, dtype)


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_forward_matches_numpy(emulated_cuda, storage, rng, shape):
    x = random_values(rng, shape, storage)
    x.reshape(-1)[:len(SPECIAL)] = stored(SPECIAL, storage)[:x.size]
    y = emulated_cuda.relu_forward(x)
    assert y.dtype == storage and y.shape == shape
    numpy.testing.assert_array_equal(y, relu_forward_numpy(x))
    numpy.testing.assert_array_equal(values_of(y), numpy.maximum(values_of(x), 0))  # the math


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_backward_matches_numpy(emulated_cuda, storage, rng, shape):
    y = _relu_output(rng, shape, storage)
    gy = random_values(rng, shape, storage)
    gx = emulated_cuda.relu_backward(y, gy)
    assert gx.dtype == storage and gx.shape == shape
    numpy.testing.assert_array_equal(gx, stored_reference(relu_backward_numpy, y, gy))
    numpy.testing.assert_array_equal(values_of(gx), numpy.where(values_of(y) > 0, values_of(gy), 0))


def test_relu_backward_takes_strided_gradients(emulated_cuda, rng):
    y = _relu_output(rng, (2, 3, 4, 5), numpy.float64)
    gy = rng.standard_normal((2, 3, 5, 4)).transpose(0, 1, 3, 2)
    numpy.testing.assert_array_equal(emulated_cuda.relu_backward(y, gy), numpy.where(y > 0, gy, 0))


@pytest.mark.parametrize("shape", SHAPES + [(4, 1, 1, 3)])
def test_add_matches_numpy(emulated_cuda, storage, rng, shape):
    a, b = random_values(rng, shape, storage), random_values(rng, shape, storage)
    y = emulated_cuda.add(a, b)
    assert y.dtype == storage and y.shape == shape
    numpy.testing.assert_array_equal(y, add_numpy(a, b))
    numpy.testing.assert_array_equal(y, stored_reference(numpy.add, a, b))


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (1, 70, 1, 1), (3, 2, 17, 9)])
def test_add_bias_adds_in_place(emulated_cuda, storage, rng, shape):
    y = random_values(rng, shape, storage)
    bias = rng.standard_normal(shape[1]).astype(numpy.float64 if storage == numpy.float64
                                                else numpy.float32)
    expected = add_bias_numpy(y.copy(), bias)
    result = emulated_cuda.add_bias(y, bias)
    assert result is y and y.dtype == storage
    numpy.testing.assert_array_equal(y, expected)


def test_add_bias_refuses_a_bias_of_another_dtype_or_shape(emulated_cuda):
    y = numpy.zeros((1, 2, 3, 3), numpy.uint16)
    with pytest.raises(TypeError, match="add_bias: a uint16 y takes a float32 bias, not uint16"):
        emulated_cuda.add_bias(y, numpy.zeros(2, numpy.uint16))
    with pytest.raises(ValueError, match=r"add_bias: .* got \(1, 2, 3, 3\) and \(3,\)"):
        emulated_cuda.add_bias(y, numpy.zeros(3, numpy.float32))


def test_add_refuses_mixed_dtypes(emulated_cuda):
    with pytest.raises(TypeError, match="add: the arrays must share one dtype, got uint16, float32"):
        emulated_cuda.add(numpy.zeros(3, numpy.uint16), numpy.zeros(3, numpy.float32))


# float32 bit patterns where rounding to bf16 is easy to get wrong: ties to even (down
# and up), just above and below a tie, a carry into the exponent, the largest finite
# float32 (rounds to inf) and the largest that does not, inf, NaNs whose payload lies
# only in the dropped bits (truncation would make them inf), negative NaNs, signed
# zeros, denormals (ties and carries among them), the smallest normal.
TRICKY_BITS = [0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x3F7FFFFF, 0x3FFF8000,
               0x7F7FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0x7F800000, 0xFF800000, 0x7F800001,
               0x7FC00000, 0xFF800001, 0xFFFFFFFF, 0x7FBFFFFF, 0x00000000, 0x80000000,
               0x00000001, 0x00008000, 0x00018000, 0x007FFFFF, 0x807F8000, 0x00800000,
               0x80808000, 0xC0490FDB]


def test_cast_rounds_as_bfloat16_py_bit_for_bit(emulated_cuda, rng):
    bits = numpy.concatenate([numpy.array(TRICKY_BITS, numpy.uint32),
                              rng.integers(0, 2**32, size=20_000, dtype=numpy.uint32)])
    x = bits.view(numpy.float32)
    y = emulated_cuda.cast(x, numpy.uint16)
    assert y.dtype == bfloat16.DTYPE and y.shape == x.shape
    numpy.testing.assert_array_equal(y, bfloat16.from_float32(x))
    numpy.testing.assert_array_equal(y, cast_numpy(x, numpy.uint16))
    assert list(y[:4]) == [0x3F80, 0x3F82, 0x3F81, 0x3F80]  # ties to even, above, below
    assert list(y[6:12]) == [0x7F80, 0x7F7F, 0x7F80, 0x7F80, 0xFF80, 0x7FC0]  # overflow, NaN


def test_cast_to_float32_is_exact_for_every_bf16(emulated_cuda):
    every = numpy.arange(2**16, dtype=numpy.uint32).astype(numpy.uint16).reshape(256, 256)
    x = emulated_cuda.cast(every, numpy.float32)
    assert x.dtype == numpy.float32 and x.shape == every.shape
    numpy.testing.assert_array_equal(x.view(numpy.uint32), every.astype(numpy.uint32) << 16)
    # and back: every value as it was, but a signalling NaN comes back quiet (NaN rule)
    back = emulated_cuda.cast(x, numpy.uint16)
    numpy.testing.assert_array_equal(back, bfloat16.from_float32(x))
    signalling = numpy.isnan(x) & (every & 0x0040 == 0)
    numpy.testing.assert_array_equal(back[~signalling], every[~signalling])
    numpy.testing.assert_array_equal(back[signalling], every[signalling] | 0x0040)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64, numpy.uint16])
def test_cast_to_the_same_dtype_copies(emulated_cuda, rng, dtype):
    x = random_values(rng, (3, 4), dtype)[:, ::2]
    y = emulated_cuda.cast(x, dtype)
    assert y.flags.c_contiguous and not numpy.shares_memory(x, y)
    numpy.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("source, target", [(numpy.float64, numpy.uint16), (numpy.uint16, numpy.float64),
                                            (numpy.float32, numpy.float16), (numpy.int32, numpy.float32)])
def test_cast_refuses_other_conversions(emulated_cuda, source, target):
    for cast in (emulated_cuda.cast, cast_numpy):
        with pytest.raises(TypeError, match=rf"cast: .* not {numpy.dtype(source).name} to "
                                            rf"{numpy.dtype(target).name}"):
            cast(numpy.zeros(3, source), target)


# (N, C, H, W): one plane per channel, many splits per channel (a split crossing the
# planes), more channels than blocks wanted (one split), planes smaller than a block.
BIAS_SHAPES = [(1, 1, 1, 1), (1, 3, 5, 7), (2, 5, 33, 41), (3, 2, 1, 1), (5, 3, 3, 3),
               (1, 1100, 2, 1), (4, 2, 37, 29)]


@pytest.mark.parametrize("shape", BIAS_SHAPES)
def test_bias_grad_matches_numpy(emulated_cuda, storage, rng, shape):
    # A bf16 gy's gradient is float32, summed in float32 (kernels/elementwise.cu): against
    # the float32 reference on its values, within float32's tolerance (another order).
    gy = random_values(rng, shape, storage)
    gb = emulated_cuda.bias_grad(gy)
    acc = numpy.float32 if storage == bfloat16.DTYPE else storage
    assert gb.dtype == acc and gb.shape == (shape[1],)
    numpy.testing.assert_allclose(gb, bias_grad_numpy(values_of(gy)), **tolerance(acc))
    loops = [sum(float(v) for v in values_of(gy)[:, c].reshape(-1)) for c in range(shape[1])]
    numpy.testing.assert_allclose(gb, loops, **tolerance(acc))


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
    empty = emulated_cuda.bias_grad(numpy.zeros((0, 4, 3, 3), numpy.uint16))
    assert empty.dtype == numpy.float32 and not empty.any()


@pytest.mark.parametrize("shape", SHAPES)
def test_accumulate_adds_in_place(emulated_cuda, storage, rng, shape):
    total = random_values(rng, shape, storage)
    g = random_values(rng, shape, storage)
    expected = stored_reference(accumulate_numpy, total.copy(), g)
    result = emulated_cuda.accumulate(total, g)
    assert result is total
    numpy.testing.assert_array_equal(total, expected)


def test_accumulate_refuses_bf16_with_another_dtype(emulated_cuda):
    with pytest.raises(TypeError, match="accumulate: the arrays must share one dtype"):
        emulated_cuda.accumulate(numpy.zeros(3, numpy.uint16), numpy.zeros(3, numpy.float32))


def test_the_new_kernels_take_empty_arrays(emulated_cuda, storage):
    empty = numpy.zeros((0, 2, 3, 3), storage)
    bias = numpy.zeros(2, numpy.float64 if storage == numpy.float64 else numpy.float32)
    assert emulated_cuda.relu_forward(empty).shape == empty.shape
    assert emulated_cuda.add(empty, empty).shape == empty.shape
    assert emulated_cuda.add_bias(empty, bias) is empty
    to = numpy.float32 if storage == bfloat16.DTYPE else bfloat16.DTYPE
    if storage != numpy.float64:
        assert emulated_cuda.cast(empty, to).dtype == to
