"""The numba versions of the fused step kernels (minifcn/cpu/elementwise.py, solver.py)
against the NumPy references: ReLU's backward, the bias gradient, the in-place
accumulation, and the SGD and Adam steps over flat arenas with odd parameter sizes."""
import numpy
import pytest

import minifcn.cpu as numba_kernels
from minifcn.reference import elementwise as numpy_elementwise
from minifcn.reference.solver import Segments, adam_step_numpy, sgd_step_numpy

DTYPES = [numpy.float32, numpy.float64]
TOLERANCE = {numpy.float32: dict(rtol=1e-5, atol=1e-6), numpy.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (3, 5, 7), (2, 3, 17, 9)])
def test_relu_backward_and_accumulate_match_numpy(rng, dtype, shape):
    y = numpy.maximum(rng.standard_normal(shape), 0).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    numpy.testing.assert_array_equal(numba_kernels.relu_backward(y, gy),
                                     numpy_elementwise.relu_backward_numpy(y, gy))
    total = rng.standard_normal(shape).astype(dtype)
    expected = numpy_elementwise.accumulate_numpy(total.copy(), gy)
    assert numba_kernels.accumulate(total, gy) is total
    numpy.testing.assert_array_equal(total, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 5, 13, 7), (3, 1100, 1, 2)])
def test_bias_grad_matches_numpy(rng, dtype, shape):
    gy = rng.standard_normal(shape).astype(dtype)
    numpy.testing.assert_allclose(numba_kernels.bias_grad(gy),
                                  numpy_elementwise.bias_grad_numpy(gy), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunk", [3, 16384])
def test_solver_steps_match_numpy(rng, dtype, chunk):
    sizes = [5, 1, 37, 12, 3]
    segments = Segments(sizes, [1, 2, 1, 2, 1], [5e-4, 0, 5e-4, 0, 0.1], chunk=chunk)
    arenas = [rng.standard_normal(sum(sizes)).astype(dtype) for _ in range(4)]
    param, grad, history, second = arenas
    expected = [a.copy() for a in arenas]
    scalars = numpy.array([0.05, 0.9, 0.5], dtype)
    sgd_step_numpy(expected[0], grad, expected[2], segments, scalars)
    numba_kernels.sgd_step(param, grad, history, segments, scalars)
    numpy.testing.assert_allclose(param, expected[0], **TOLERANCE[dtype])
    numpy.testing.assert_allclose(history, expected[2], **TOLERANCE[dtype])

    second[...] = expected[3][...] = numpy.abs(second)
    scalars = numpy.array([1e-3 / 0.1, 0.9, 0.1, 0.999, 0.001, 1e-8, 0.5, 0.001], dtype)
    adam_step_numpy(expected[0], grad, expected[2], expected[3], segments, scalars)
    numba_kernels.adam_step(param, grad, history, second, segments, scalars)
    for got, want in zip((param, history, second), (expected[0], expected[2], expected[3])):
        numpy.testing.assert_allclose(got, want, **TOLERANCE[dtype])
