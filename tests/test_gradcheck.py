"""check_backward: passes correct ops, names the wrong element of a wrong one."""
import re

import numpy
import pytest

import minifcn as mf
from minifcn import functions as F
from minifcn.autograd import Function
from minifcn.gradcheck import check_backward


class ScaledProduct(Function):
    """y = a * b * 3 elementwise; `wrong_at` makes b's gradient wrong at one element."""

    def __init__(self, wrong_at=None, error=1.0):
        self.wrong_at, self.error = wrong_at, error

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b * 3.0

    def backward(self, gy):
        ga, gb = gy * self.b * 3.0, gy * self.a * 3.0
        if self.wrong_at is not None:
            gb = gb.copy()
            gb[self.wrong_at] *= 1.0 + self.error
        return ga, gb


def test_passes_on_a_correct_function(rng):
    check_backward(lambda a, b: ScaledProduct()(a, b), [rng.standard_normal((3, 4)),
                                                        rng.standard_normal((3, 4))])


def test_passes_on_a_composite_of_ops(rng):
    def fn(x, w):
        return F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2, ceil_mode=True)
    check_backward(fn, [rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((2, 2, 3, 3))],
                   atol=1e-4)


def test_names_the_input_and_element_of_a_wrong_gradient(rng):
    a, b = rng.standard_normal((3, 4)) + 2.0, rng.standard_normal((3, 4)) + 2.0
    with pytest.raises(AssertionError, match=r"input 1 \(shape \(3, 4\)\) element \(1, 2\)"):
        check_backward(lambda a, b: ScaledProduct(wrong_at=(1, 2))(a, b), [a, b])


def test_a_wrong_gradient_on_the_first_input_is_reported_there(rng):
    class WrongRelu(Function):
        def forward(self, x):
            self.x = x
            return numpy.maximum(x, 0)

        def backward(self, gy):
            return gy * (self.x >= 0) * 0.5  # half the true gradient

    x = numpy.array([[1.0, -1.0], [2.0, -3.0]])
    with pytest.raises(AssertionError, match=r"input 0 .* element \((0, 0|1, 0)\)") as error:
        check_backward(lambda t: WrongRelu()(t), [x])
    analytic, numeric = re.search(r"analytic (\S+) vs numeric (\S+) ", str(error.value)).groups()
    assert float(analytic) == pytest.approx(float(numeric) / 2, rel=1e-6)


def test_a_missing_gradient_counts_as_zero(rng):
    class NoGradForB(Function):
        def forward(self, a, b):
            return a + b

        def backward(self, gy):
            return gy, None

    with pytest.raises(AssertionError, match=r"input 1.*analytic 0 vs numeric"):
        check_backward(lambda a, b: NoGradForB()(a, b), [numpy.ones(3), numpy.ones(3)])


def test_tolerances_are_honoured(rng):
    a, b = rng.standard_normal(5) + 3.0, rng.standard_normal(5) + 3.0
    slightly_wrong = lambda a, b: ScaledProduct(wrong_at=(2,), error=1e-3)(a, b)  # noqa: E731
    with pytest.raises(AssertionError):
        check_backward(slightly_wrong, [a, b])
    check_backward(slightly_wrong, [a, b], rtol=1e-2)


def test_integer_inputs_are_passed_through_not_differentiated(rng):
    seen = []

    def fn(score, target):
        seen.append(target.data.copy())
        assert target.dtype.kind == "i" and not target.requires_grad
        assert score.dtype == numpy.float64 and score.requires_grad
        return F.softmax_cross_entropy(score, target)

    target = rng.integers(0, 3, (1, 2, 2))
    check_backward(fn, [rng.standard_normal((1, 3, 2, 2)), target])
    assert len(seen) == 1 + 2 * 12  # one analytic pass, two per score element
    assert all(numpy.array_equal(s, target) for s in seen)


def test_float32_inputs_are_checked_in_float64(rng):
    dtypes = set()

    def fn(x):
        dtypes.add(x.dtype)
        return x * 2.0

    x = rng.standard_normal((2, 3)).astype(numpy.float32)
    check_backward(fn, [x])
    assert dtypes == {numpy.dtype(numpy.float64)}


def test_inputs_are_left_untouched(rng):
    x = rng.standard_normal((2, 3))
    tensor = mf.Tensor(x.copy())
    check_backward(lambda t: t * 2.0, [tensor])
    numpy.testing.assert_array_equal(tensor.data, x)
    assert tensor.grad is None


def test_a_single_input_need_not_be_in_a_list(rng):
    check_backward(F.relu, rng.standard_normal((3, 3)) + 5.0)
    check_backward(F.relu, mf.Tensor(rng.standard_normal((3, 3)) + 5.0))


@pytest.mark.parametrize("layout", ["fortran", "transposed", "strided"])
def test_non_contiguous_inputs(rng, layout):
    """The numeric side perturbs the input in place: it must not perturb a copy."""
    base = rng.standard_normal((4, 6))
    x = {"fortran": numpy.asfortranarray(base), "transposed": base.T,
         "strided": base[:, ::2]}[layout]
    check_backward(lambda t: F.relu(t) * 3.0, [x + 5.0 if layout == "strided" else numpy.abs(x) + 1.0])


def test_scalar_output(rng):
    check_backward(lambda t: (t * 3.0).sum(), [rng.standard_normal((2, 3))])


def test_fn_must_return_a_tensor(rng):
    with pytest.raises(TypeError, match="fn must return a Tensor"):
        check_backward(lambda t: t.data, [rng.standard_normal(3)])
