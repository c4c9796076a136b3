"""Through the public API: every op that has a numba kernel gives the same forward
values and gradients under use_cpu_kernels("numba") and use_cpu_kernels("numpy")."""
import numpy
import pytest

import minifcn as mf
from minifcn import backend
from minifcn import functions as F

DTYPES = [numpy.float32, numpy.float64]
TOLERANCE = {numpy.float32: dict(rtol=2e-5, atol=2e-5), numpy.float64: dict(rtol=1e-11, atol=1e-11)}


def run_both(fn, arrays, seed=0):
    """fn's output and its inputs' gradients (for a random output gradient) with each
    CPU kernel set: {"numpy": [y, g1, ...], "numba": [...]}."""
    results = {}
    for kernel_set in ("numpy", "numba"):
        with backend.use_cpu_kernels(kernel_set):
            leaves = [mf.Tensor(a.copy(), requires_grad=a.dtype.kind == "f") for a in arrays]
            y = fn(*leaves)
            gy = numpy.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
            y.backward(gy)
            results[kernel_set] = [y.data] + [t.grad for t in leaves if t.requires_grad]
    return results


def assert_same(results, dtype):
    for got, expected in zip(results["numba"], results["numpy"]):
        numpy.testing.assert_allclose(got, expected, **TOLERANCE[dtype])


# (x shape, weight shape, stride, padding, dilation, groups)
CONV_CASES = [((2, 3, 11, 9), (4, 3, 3, 3), 1, 1, 1, 1),
              ((1, 4, 13, 10), (6, 2, 3, 5), (2, 3), (3, 0), 1, 2),
              ((2, 2, 9, 12), (3, 2, 3, 3), 3, 2, 2, 1),
              ((1, 6, 7, 7), (6, 1, 3, 3), 1, 1, (1, 2), 6),
              ((1, 5, 15, 6), (2, 5, 1, 1), 1, 0, 1, 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CONV_CASES)
def test_conv2d(x_shape, w_shape, stride, padding, dilation, groups, dtype):
    rng = numpy.random.default_rng(1)
    arrays = [rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, w_shape[:1])]
    assert_same(run_both(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups),
                         arrays), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups",
                         [((1, 3, 4, 5), (3, 3, 4, 4), 2, 1, 1),       # upscore2
                          ((2, 2, 3, 3), (2, 2, 16, 16), 8, 0, 1),     # upscore8
                          ((1, 4, 5, 3), (4, 1, 3, 2), (3, 1), (1, 0), 2)])
def test_conv_transpose2d(x_shape, w_shape, stride, padding, groups, dtype):
    rng = numpy.random.default_rng(2)
    c_out = w_shape[1] * groups
    arrays = [rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, (c_out,))]
    assert_same(run_both(lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, groups),
                         arrays), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, (1, 3), (2, 1))])
def test_pooling(pool, kernel, stride, padding, ceil_mode, dtype):
    rng = numpy.random.default_rng(3)
    x = rng.integers(0, 4, (2, 3, 11, 8)).astype(dtype)  # many ties
    assert_same(run_both(lambda x: pool(x, kernel, stride, padding, ceil_mode), [x]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalize", [False, True])
def test_softmax_cross_entropy(normalize, dtype):
    rng = numpy.random.default_rng(4)
    score = rng.standard_normal((2, 5, 9, 7)).astype(dtype)
    target = rng.integers(0, 5, (2, 9, 7))
    target[:, :3] = 255
    assert_same(run_both(lambda s, t: F.softmax_cross_entropy(s, t, 255, normalize)
                         .reshape(1), [score, target]), dtype)
