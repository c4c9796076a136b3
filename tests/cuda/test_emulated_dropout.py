"""Dropout (kernels/dropout.cu) on the CPU emulation against the NumPy reference: the
same SplitMix64 bits, so the same mask, bit for bit."""
import math

import numpy
import pytest

from minifcn.reference.dropout import dropout_numpy


@pytest.mark.parametrize("shape", [(1,), (3, 5, 7), (2, 17, 4, 9)])
@pytest.mark.parametrize("p, seed", [(0.1, 0), (0.5, 2**63 - 1), (0.9, 12345)])
def test_dropout_matches_numpy_bit_for_bit(emulated_cuda, dtype, rng, shape, p, seed):
    x = rng.standard_normal(shape).astype(dtype)
    threshold, scale = math.ceil(p * 2**53), 1.0 / (1.0 - p)
    y = emulated_cuda.dropout(x, seed, threshold, scale)
    expected = dropout_numpy(x, seed, threshold, scale)
    assert y.dtype == dtype and y.shape == shape
    numpy.testing.assert_array_equal(y, expected)


def test_the_kept_fraction_is_one_minus_p(emulated_cuda):
    x = numpy.ones(100_003, numpy.float32)
    for p in (0.2, 0.5):
        kept = emulated_cuda.dropout(x, 7, math.ceil(p * 2**53), 1.0 / (1.0 - p)) != 0
        sigma = math.sqrt(p * (1 - p) / x.size)
        assert abs(kept.mean() - (1 - p)) < 5 * sigma


@pytest.mark.parametrize("seed", [0, 12345, 2**63 - 1])
def test_a_seed_in_device_memory_draws_the_same_mask(emulated_cuda, dtype, rng, seed):
    # dropout_seed_on_device: what a captured training step launches (minifcn/graph.py)
    x = rng.standard_normal((3, 5, 7)).astype(dtype)
    threshold, scale = math.ceil(0.3 * 2**53), 1.0 / 0.7
    y = emulated_cuda.dropout(x, numpy.array([seed], numpy.int64), threshold, scale)
    numpy.testing.assert_array_equal(y, dropout_numpy(x, seed, threshold, scale))
