"""local_response_norm against a loop over channels of Caffe's LRN formula."""
import numpy
import pytest

import minifcn as mf
from minifcn import functions as F
from minifcn.gradcheck import check_backward

from .reference import lrn_ref

# (x shape, size, alpha, beta, k): alpha large enough that the normalisation matters.
LRN_CASES = [
    ((2, 7, 3, 4), 5, 1e-4, 0.75, 1.0),    # AlexNet's parameters
    ((2, 7, 3, 4), 5, 0.9, 0.75, 1.0),
    ((1, 6, 2, 3), 3, 1.5, 0.5, 2.0),
    ((2, 5, 2, 2), 4, 0.8, 0.75, 1.0),     # even size: window [c-1, c+2]
    ((1, 4, 3, 2), 2, 1.2, 1.0, 0.5),      # even size: window [c, c+1]
    ((1, 3, 2, 2), 7, 0.7, 0.75, 1.0),     # window wider than the channels
    ((2, 4, 2, 3), 1, 2.0, 0.6, 1.0),      # size 1: each channel by itself
    ((1, 1, 3, 3), 5, 1.0, 0.75, 1.0),     # one channel
]
IDS = [f"x{c[0]}-n{c[1]}-a{c[2]}-b{c[3]}-k{c[4]}".replace(" ", "") for c in LRN_CASES]


@pytest.mark.parametrize("x_shape, size, alpha, beta, k", LRN_CASES, ids=IDS)
def test_lrn_forward_matches_loops(rng, x_shape, size, alpha, beta, k):
    x = rng.standard_normal(x_shape) * 2
    y = F.local_response_norm(mf.Tensor(x), size, alpha, beta, k)
    numpy.testing.assert_allclose(y.data, lrn_ref(x, size, alpha, beta, k), rtol=1e-12)


@pytest.mark.parametrize("x_shape, size, alpha, beta, k", LRN_CASES, ids=IDS)
def test_lrn_gradcheck(rng, x_shape, size, alpha, beta, k):
    check_backward(lambda x: F.local_response_norm(x, size, alpha, beta, k),
                   [rng.standard_normal(x_shape) * 2])


def test_lrn_by_hand():
    """Three channels, size 3, alpha 3 (alpha/size = 1), beta 1, k 1: channel c is
    divided by 1 + the sum of squares of channels c-1..c+1 that exist."""
    x = numpy.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    y = F.local_response_norm(mf.Tensor(x), size=3, alpha=3.0, beta=1.0, k=1.0)
    expected = [1 / (1 + 1 + 4), 2 / (1 + 1 + 4 + 9), 3 / (1 + 4 + 9)]
    numpy.testing.assert_allclose(y.data.ravel(), expected, rtol=1e-14)


def test_lrn_defaults_are_alexnets(rng):
    x = rng.standard_normal((1, 6, 2, 2)) * 30
    numpy.testing.assert_allclose(F.local_response_norm(mf.Tensor(x)).data,
                                  lrn_ref(x, 5, 1e-4, 0.75, 1.0), rtol=1e-12)


@pytest.mark.parametrize("x_shape, size, alpha, beta, k", LRN_CASES[1:4], ids=IDS[1:4])
def test_lrn_float32_agrees_with_float64(rng, x_shape, size, alpha, beta, k):
    x = rng.standard_normal(x_shape)
    results = {}
    for dtype in (numpy.float32, numpy.float64):
        xt = mf.Tensor(x.astype(dtype), requires_grad=True)
        y = F.local_response_norm(xt, size, alpha, beta, k)
        assert y.dtype == dtype
        y.backward(numpy.ones(y.shape, dtype))
        assert xt.grad.dtype == dtype
        results[dtype] = (y.data, xt.grad)
    for low, high in zip(results[numpy.float32], results[numpy.float64]):
        numpy.testing.assert_allclose(low, high, rtol=1e-4, atol=1e-5)
