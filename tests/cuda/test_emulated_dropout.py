"""Dropout (kernels/dropout.cu) on the CPU emulation against the NumPy reference: the
same SplitMix64 bits, so the same mask, bit for bit, in the 16-byte vectors and the
tail after them; in bf16 too (one float32 multiply, rounded once: exact against
stored_reference), with the mask of the float32 build."""
import ctypes
import math

import numpy
import pytest

from minifcn import bfloat16, cuda
from minifcn.reference.dropout import dropout_numpy

from cuda_emulator import random_values, stored_reference


# sizes 1 to 17 and 105: the tails after the 16-byte vectors (4 floats, 2 doubles, 8 bf16)
@pytest.mark.parametrize("shape", [(1,), (2,), (3,), (5,), (6,), (7,), (9,), (15,), (17,),
                                   (3, 5, 7), (2, 17, 4, 9)])
@pytest.mark.parametrize("p, seed", [(0.1, 0), (0.5, 2**63 - 1), (0.9, 12345)])
def test_dropout_matches_numpy_bit_for_bit(emulated_cuda, storage, rng, shape, p, seed):
    x = random_values(rng, shape, storage)
    threshold, scale = math.ceil(p * 2**53), 1.0 / (1.0 - p)
    y = emulated_cuda.dropout(x, seed, threshold, scale)
    expected = stored_reference(dropout_numpy, x, seed, threshold, scale)
    assert y.dtype == storage and y.shape == shape
    numpy.testing.assert_array_equal(y, expected)


def test_bf16_drops_what_float32_drops(emulated_cuda, rng):
    x = random_values(rng, (3, 7, 11), numpy.float32) + numpy.float32(10)  # no zeros
    threshold, scale = math.ceil(0.4 * 2**53), 1.0 / 0.6
    kept = emulated_cuda.dropout(x, 5, threshold, scale) != 0
    kept_bf16 = bfloat16.to_float32(emulated_cuda.dropout(bfloat16.from_float32(x), 5, threshold,
                                                          scale)) != 0
    numpy.testing.assert_array_equal(kept_bf16, kept)
    assert 0 < kept.sum() < x.size


def test_the_kept_fraction_is_one_minus_p(emulated_cuda):
    x = numpy.ones(100_003, numpy.float32)
    for p in (0.2, 0.5):
        kept = emulated_cuda.dropout(x, 7, math.ceil(p * 2**53), 1.0 / (1.0 - p)) != 0
        sigma = math.sqrt(p * (1 - p) / x.size)
        assert abs(kept.mean() - (1 - p)) < 5 * sigma


@pytest.mark.parametrize("seed", [0, 12345, 2**63 - 1])
def test_a_seed_in_device_memory_draws_the_same_mask(emulated_cuda, storage, rng, seed):
    # dropout_seed_on_device: what a captured training step launches (minifcn/graph.py)
    x = random_values(rng, (3, 5, 7), storage)
    threshold, scale = math.ceil(0.3 * 2**53), 1.0 / 0.7
    y = emulated_cuda.dropout(x, numpy.array([seed], numpy.int64), threshold, scale)
    numpy.testing.assert_array_equal(y, stored_reference(dropout_numpy, x, seed, threshold, scale))


def _unaligned(dtype, size):
    """A zeroed array of `size` elements whose data pointer is not 16-byte aligned."""
    buffer = numpy.zeros(size + 4, dtype)
    offset = next(i for i in range(1, 4) if (buffer.ctypes.data + i * dtype.itemsize) % 16)
    return buffer[offset: offset + size]


@pytest.mark.parametrize("size", [1, 9, 130])
def test_dropout_of_unaligned_arrays_matches_numpy(emulated_gpu, storage, rng, size):
    # the single-element path, for a view into a larger buffer on the GPU: cuda_emulator's
    # launches align their copies, so this calls the emulated kernel on these directly
    dtype = storage
    x, y = _unaligned(dtype, size), _unaligned(dtype, size)
    x[...] = random_values(rng, size, dtype)
    seed, threshold, scale = 99, math.ceil(0.3 * 2**53), 1.0 / 0.7
    values = [numpy.array(size, numpy.int32), numpy.array(seed, numpy.int64),
              numpy.array(threshold, numpy.int64), numpy.array(scale, cuda.acc_dtype(dtype))]
    x_pointer, y_pointer = ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(y.ctypes.data)
    pointers = (ctypes.c_void_p * 6)(ctypes.addressof(x_pointer), values[0].ctypes.data,
                                      values[1].ctypes.data, values[2].ctypes.data,
                                      values[3].ctypes.data, ctypes.addressof(y_pointer))
    run = emulated_gpu.library("dropout.cu", (dtype.name, 32)).run_dropout
    run.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int]
    status = run((ctypes.c_uint * 3)(2, 1, 1), (ctypes.c_uint * 3)(3, 1, 1), pointers, 0)
    assert status == 0
    numpy.testing.assert_array_equal(y, stored_reference(dropout_numpy, x, seed, threshold, scale))
