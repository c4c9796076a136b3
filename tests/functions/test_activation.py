"""relu and dropout."""
import math

import numpy
import pytest

import minifcn as mf
from minifcn import functions as F
from minifcn.functions.activation import Dropout
from minifcn.reference.dropout import splitmix64
from minifcn.gradcheck import check_backward


def _away_from_zero(rng, shape):
    """Normal values with |x| >= 0.05, so a finite-difference step never crosses 0."""
    x = rng.standard_normal(shape)
    return numpy.where(x >= 0, x + 0.05, x - 0.05)


# ----------------------------------------------------------------------- relu
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7,), (3, 1)])
def test_relu_forward_and_gradcheck(rng, shape):
    x = _away_from_zero(rng, shape)
    y = F.relu(mf.Tensor(x))
    expected = numpy.array([v if v > 0 else 0.0 for v in x.ravel()]).reshape(shape)
    numpy.testing.assert_array_equal(y.data, expected)
    check_backward(F.relu, [x])


def test_relu_gradient_at_zero_is_zero():
    x = mf.Tensor(numpy.array([-1.0, 0.0, 2.0]), requires_grad=True)
    F.relu(x).backward(numpy.ones(3))
    numpy.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])


def test_relu_float32_agrees_with_float64(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    x32 = mf.Tensor(x.astype(numpy.float32), requires_grad=True)
    y32 = F.relu(x32)
    assert y32.dtype == numpy.float32
    y32.backward(numpy.ones(y32.shape, numpy.float32))
    assert x32.grad.dtype == numpy.float32
    numpy.testing.assert_allclose(y32.data, numpy.maximum(x, 0), rtol=1e-6)
    numpy.testing.assert_array_equal(x32.grad, (x > 0).astype(numpy.float32))


def test_inplace_relu_overwrites_its_input_and_gives_the_same_gradients(rng):
    x = _away_from_zero(rng, (2, 3, 5, 4))
    gy = rng.standard_normal(x.shape)
    grads = []
    for inplace in (False, True):
        leaf = mf.Tensor(x.copy(), requires_grad=True)
        hidden = leaf * 2.0  # an op's output, read by nothing but the ReLU
        y = F.relu(hidden, inplace=inplace)
        assert (y.data is hidden.data) == inplace
        numpy.testing.assert_array_equal(y.data, numpy.maximum(2 * x, 0))
        y.backward(gy)
        grads.append(leaf.grad)
    numpy.testing.assert_array_equal(grads[0], grads[1])
    numpy.testing.assert_array_equal(grads[1], 2 * gy * (x > 0))
    # the gradient check, through an op in front so the overwritten input is not a leaf
    check_backward(lambda t: F.relu(t * 1.0, inplace=True), [x])


def test_inplace_relu_refuses_a_leaf_that_needs_a_gradient():
    leaf = mf.Tensor(numpy.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"relu: inplace=True on a leaf tensor \(2, 3\)"):
        F.relu(leaf, inplace=True)


# -------------------------------------------------------------------- dropout
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_statistics_and_scaling(p):
    mf.seed(0)
    n = 200_000
    y = F.dropout(mf.Tensor(numpy.ones((2, 5, 100, 200))), p=p).data
    dropped = numpy.mean(y == 0)
    sigma = numpy.sqrt(p * (1 - p) / n)
    assert abs(dropped - p) < 5 * sigma
    kept = y[y != 0]
    numpy.testing.assert_allclose(kept, 1.0 / (1.0 - p), rtol=1e-12)
    assert abs(y.mean() - 1.0) < 5 * sigma / (1 - p)  # inverted dropout keeps the mean


def test_dropout_masks_differ_between_calls_and_channels():
    mf.seed(1)
    x = mf.Tensor(numpy.ones((1, 2, 30, 30)))
    first, second = F.dropout(x).data, F.dropout(x).data
    assert not numpy.array_equal(first, second)
    assert not numpy.array_equal(first[0, 0], first[0, 1])


@pytest.mark.parametrize("p, training", [(0.5, False), (0.9, False), (0.0, True)])
def test_dropout_identity_when_not_training_or_p_zero(rng, p, training):
    x = mf.Tensor(rng.standard_normal((2, 3, 4, 4)), requires_grad=True)
    y = F.dropout(x, p=p, training=training)
    numpy.testing.assert_array_equal(y.data, x.data)
    y.backward(numpy.full(x.shape, 3.0))
    numpy.testing.assert_array_equal(x.grad, numpy.full(x.shape, 3.0))


def test_dropout_reproducible_with_seed(rng):
    x = mf.Tensor(rng.standard_normal((2, 3, 8, 8)))
    mf.seed(42)
    a = F.dropout(x, p=0.3).data
    mf.seed(42)
    b = F.dropout(x, p=0.3).data
    mf.seed(43)
    c = F.dropout(x, p=0.3).data
    numpy.testing.assert_array_equal(a, b)
    assert not numpy.array_equal(a, c)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_backward_uses_the_forward_mask(rng, p):
    x = mf.Tensor(_away_from_zero(rng, (2, 3, 5, 5)), requires_grad=True)
    mf.seed(7)
    y = F.dropout(x, p=p)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    kept = y.data != 0
    numpy.testing.assert_allclose(y.data[kept], x.data[kept] / (1 - p), rtol=1e-12)
    numpy.testing.assert_allclose(x.grad, numpy.where(kept, gy / (1 - p), 0.0), rtol=1e-12)


def test_dropout_gradcheck_with_a_fixed_seed(rng):
    def fn(x):
        mf.seed(123)  # the same mask on every evaluation
        return F.dropout(x, p=0.4)
    check_backward(fn, [rng.standard_normal((2, 2, 3, 4))])


def test_dropout_float32_and_float64_draw_the_same_mask(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    mf.seed(5)
    y32 = F.dropout(mf.Tensor(x.astype(numpy.float32)), p=0.5)
    mf.seed(5)
    y64 = F.dropout(mf.Tensor(x), p=0.5)
    assert y32.dtype == numpy.float32
    numpy.testing.assert_allclose(y32.data, y64.data, rtol=1e-6)


def test_splitmix64_gives_the_published_outputs():
    # Seed 1234567's first five outputs, as listed with the reference implementation
    # (Rosetta Code, "Pseudo-random numbers/Splitmix64").
    outputs = splitmix64(numpy, 1234567, 5)
    assert outputs.dtype == numpy.uint64
    assert outputs.tolist() == [6457827717110365317, 3203168211198807973, 9817491932198370423,
                                4593380528125082431, 16408922859458223821]


@pytest.mark.parametrize("p", [0.1, 0.5, 0.75])
@pytest.mark.parametrize("seed", [0, 987654321, 2**63 - 1])
def test_dropout_mask_is_the_hash_of_seed_and_index(rng, p, seed):
    # Plain Python integers, element by element: keep where the top 53 bits of
    # SplitMix64(seed, i) reach ceil(p 2^53).
    x = rng.standard_normal((3, 5, 7))
    mask64 = 2**64 - 1

    def bits(i):
        z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & mask64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
        return (z ^ (z >> 31)) >> 11

    threshold = math.ceil(p * 2**53)
    expected = numpy.array([value / (1 - p) if bits(i) >= threshold else 0.0
                            for i, value in enumerate(x.ravel())]).reshape(x.shape)
    y = Dropout(p, seed)(mf.Tensor(x)).data
    numpy.testing.assert_allclose(y, expected, rtol=1e-15, atol=0)
    numpy.testing.assert_array_equal(y == 0, expected == 0)
