"""add, scale (x * c), reshape, sum, crop and concat."""
import numpy
import pytest

import minifcn as mf
from minifcn import functions as F
from minifcn.gradcheck import check_backward


# ------------------------------------------------------------ add and scale
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3,), ()])
def test_add_forward_and_gradcheck(rng, shape):
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    y = mf.Tensor(a) + mf.Tensor(b)
    numpy.testing.assert_array_equal(y.data, numpy.add(a, b))
    numpy.testing.assert_array_equal(F.add(mf.Tensor(a), mf.Tensor(b)).data, y.data)
    check_backward(F.add, [a, b])


def test_add_gradient_reaches_both_inputs(rng):
    a = mf.Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    b = mf.Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    gy = rng.standard_normal((2, 3))
    (a + b).backward(gy)
    numpy.testing.assert_array_equal(a.grad, gy)
    numpy.testing.assert_array_equal(b.grad, gy)


@pytest.mark.parametrize("factor", [2.0, -0.5, 0.0, 3])
def test_scale_forward_and_gradcheck(rng, factor):
    x = rng.standard_normal((2, 3, 4))
    for y in (mf.Tensor(x) * factor, factor * mf.Tensor(x), F.scale(mf.Tensor(x), factor)):
        numpy.testing.assert_array_equal(y.data, numpy.multiply(x, float(factor)))
    check_backward(lambda t: t * factor, [x])


def test_neg_and_sub(rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    at, bt = mf.Tensor(a, requires_grad=True), mf.Tensor(b, requires_grad=True)
    y = at - bt
    numpy.testing.assert_allclose(y.data, a - b, rtol=1e-15)
    numpy.testing.assert_array_equal((-at).data, -a)
    y.backward(numpy.ones((3, 4)))
    numpy.testing.assert_array_equal(at.grad, numpy.ones((3, 4)))
    numpy.testing.assert_array_equal(bt.grad, -numpy.ones((3, 4)))


def test_scale_keeps_float32(rng):
    x = mf.Tensor(rng.standard_normal((2, 3)).astype(numpy.float32), requires_grad=True)
    y = x * 0.1
    assert y.dtype == numpy.float32
    y.backward(numpy.ones((2, 3), numpy.float32))
    assert x.grad.dtype == numpy.float32
    numpy.testing.assert_allclose(y.data, x.data.astype(numpy.float64) * 0.1, rtol=1e-6)


# ---------------------------------------------------------- reshape and sum
@pytest.mark.parametrize("shape, new_shape", [((2, 3, 4), (6, 4)), ((2, 3, 4), (4, -1)),
                                              ((1, 6, 1, 1), (6,)), ((5,), (1, 5, 1))])
def test_reshape_forward_and_gradcheck(rng, shape, new_shape):
    x = rng.standard_normal(shape)
    y = mf.Tensor(x).reshape(new_shape)
    numpy.testing.assert_array_equal(y.data, numpy.reshape(x, new_shape))
    assert F.reshape(mf.Tensor(x), new_shape).shape == y.shape
    check_backward(lambda t: F.reshape(t, new_shape), [x])


def test_reshape_accepts_separate_ints(rng):
    x = mf.Tensor(rng.standard_normal((2, 6)))
    assert x.reshape(3, 4).shape == (3, 4)


def test_sum_forward_and_gradcheck(rng):
    x = rng.standard_normal((2, 3, 4))
    total = mf.Tensor(x).sum()
    assert total.shape == ()
    numpy.testing.assert_allclose(total.item(), sum(x.ravel().tolist()), rtol=1e-12)
    check_backward(lambda t: t.sum(), [x])


# ----------------------------------------------------------------------- crop
def _crop_ref(x, oy, ox, h, w):
    out = numpy.empty(x.shape[:2] + (h, w))
    for r in range(h):
        for c in range(w):
            out[:, :, r, c] = x[:, :, oy + r, ox + c]
    return out


@pytest.mark.parametrize("x_shape, size, offset", [
    ((2, 3, 7, 6), (4, 3), (1, 2)),
    ((1, 2, 5, 5), (5, 5), 0),           # the whole input
    ((2, 1, 9, 4), (3, 1), 3),           # int offset on both axes
    ((1, 1, 6, 8), (2, 3), (4, 5)),      # flush against the bottom-right corner
])
def test_crop_forward_and_gradcheck(rng, x_shape, size, offset):
    x = rng.standard_normal(x_shape)
    oy, ox = (offset, offset) if isinstance(offset, int) else offset
    expected = _crop_ref(x, oy, ox, *size)
    reference = mf.Tensor(numpy.zeros((5, 7) + size))  # only its H, W matter
    for ref in (size, list(size), reference):
        y = F.crop(mf.Tensor(x), ref, offset)
        assert y.shape == x_shape[:2] + size
        numpy.testing.assert_array_equal(y.data, expected)
    check_backward(lambda t: F.crop(t, size, offset), [x])


def test_crop_gradient_is_zero_outside_the_window(rng):
    x = mf.Tensor(rng.standard_normal((1, 2, 5, 6)), requires_grad=True)
    F.crop(x, (2, 3), (1, 2)).backward(numpy.ones((1, 2, 2, 3)))
    expected = numpy.zeros((1, 2, 5, 6))
    expected[:, :, 1:3, 2:5] = 1.0
    numpy.testing.assert_array_equal(x.grad, expected)


# --------------------------------------------------------------------- concat
@pytest.mark.parametrize("shapes, axis", [
    ([(2, 1, 3, 4), (2, 3, 3, 4)], 1),
    ([(1, 2, 3), (2, 2, 3), (3, 2, 3)], 0),
    ([(2, 2, 3, 1), (2, 2, 3, 4)], -1),
    ([(2, 5)], 1),
])
def test_concat_forward_and_gradcheck(rng, shapes, axis):
    xs = [rng.standard_normal(s) for s in shapes]
    y = F.concat([mf.Tensor(x) for x in xs], axis=axis)
    # the reference: fill the output slice by slice along the axis
    ax = axis % len(shapes[0])
    total = sum(s[ax] for s in shapes)
    expected = numpy.empty(shapes[0][:ax] + (total,) + shapes[0][ax + 1:])
    start = 0
    for x in xs:
        index = [slice(None)] * x.ndim
        index[ax] = slice(start, start + x.shape[ax])
        expected[tuple(index)] = x
        start += x.shape[ax]
    numpy.testing.assert_array_equal(y.data, expected)
    check_backward(lambda *ts: F.concat(list(ts), axis=axis), xs)


def test_concat_default_axis_is_channels(rng):
    a, b = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((1, 1, 3, 3))
    assert F.concat([mf.Tensor(a), mf.Tensor(b)]).shape == (1, 3, 3, 3)


def test_concat_only_some_inputs_need_gradients(rng):
    a = mf.Tensor(rng.standard_normal((1, 2, 2, 2)), requires_grad=True)
    b = mf.Tensor(rng.standard_normal((1, 3, 2, 2)))
    y = F.concat([a, b])
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    numpy.testing.assert_array_equal(a.grad, gy[:, :2])
    assert b.grad is None


@pytest.mark.parametrize("op", ["add", "reshape", "crop", "concat", "sum"])
def test_array_ops_keep_float32(rng, op):
    x = mf.Tensor(rng.standard_normal((2, 3, 4, 4)).astype(numpy.float32), requires_grad=True)
    y = {"add": lambda: x + x, "reshape": lambda: x.reshape(6, 16),
         "crop": lambda: F.crop(x, (2, 3), (1, 1)), "concat": lambda: F.concat([x, x]),
         "sum": lambda: x.sum()}[op]()
    assert y.dtype == numpy.float32
    y.backward(numpy.ones(y.shape, numpy.float32))
    assert x.grad.dtype == numpy.float32
