"""The graph machinery: accumulation, ordering, depth, no_grad, release of buffers."""
import inspect
import sys
import weakref

import numpy
import pytest

import minifcn as mf
from minifcn import functions as F
from minifcn.autograd import Function


def leaf(rng, *shape):
    return mf.Tensor(rng.standard_normal(shape), requires_grad=True)


# ------------------------------------------------------------------ accumulation
def test_input_used_twice_accumulates_both_gradients(rng):
    x = leaf(rng, 3, 4)
    (x + x).backward(numpy.ones((3, 4)))
    numpy.testing.assert_array_equal(x.grad, numpy.full((3, 4), 2.0))


def test_input_used_by_two_different_ops(rng):
    x = leaf(rng, 2, 5)
    y = F.relu(x) + x * 3.0
    gy = rng.standard_normal((2, 5))
    y.backward(gy)
    numpy.testing.assert_allclose(x.grad, gy * ((x.data > 0) + 3.0), rtol=1e-14)


def test_diamond_graph(rng):
    """x -> h -> (p, q) -> p + q: h's two gradients are summed before h's creator runs."""
    x = leaf(rng, 1, 2, 4, 4)
    h = x * 2.0
    p = F.relu(h)
    q = h * -0.5
    out = F.avg_pool2d(p + q, 2)
    out.backward(numpy.ones(out.shape))
    expected = 2.0 * (numpy.where(x.data > 0, 1.0, 0.0) - 0.5) * 0.25
    numpy.testing.assert_allclose(x.grad, expected, rtol=1e-14)


def test_nested_diamonds_and_a_tensor_reused_at_different_depths(rng):
    """y = ((x + x) + x) + (x + x): dy/dx = 5 whatever order the nodes are walked in."""
    x = leaf(rng, 3)
    a = x + x
    b = a + x
    y = b + a
    y.backward(numpy.ones(3))
    numpy.testing.assert_array_equal(x.grad, numpy.full(3, 5.0))


def test_leaf_grad_accumulates_over_two_backward_calls(rng):
    x = leaf(rng, 2, 3)
    (x * 2.0).backward(numpy.ones((2, 3)))
    (x * 3.0).backward(numpy.ones((2, 3)))
    numpy.testing.assert_array_equal(x.grad, numpy.full((2, 3), 5.0))


def test_accumulating_one_leaf_leaves_a_leaf_sharing_its_gradient_alone(rng):
    """The gradient of a + b is handed to both leaves; adding more into a.grad later
    must not change b.grad (no in-place accumulation into a shared array)."""
    a, b = leaf(rng, 4), leaf(rng, 4)
    (a + b).backward(numpy.ones(4))
    (a * 10.0).backward(numpy.ones(4))
    numpy.testing.assert_array_equal(a.grad, numpy.full(4, 11.0))
    numpy.testing.assert_array_equal(b.grad, numpy.ones(4))



def test_sums_autograd_made_are_added_into_in_place_shared_gradients_never(rng):
    """x used four times: the first gradient is shared (Add hands gy to both inputs),
    the first sum is a new array, the later ones go into that array in place."""
    x, b = leaf(rng, 4), leaf(rng, 4)
    y = ((x + x) + (x + b)) + x
    gy = numpy.ones(4)
    y.backward(gy)
    numpy.testing.assert_array_equal(x.grad, numpy.full(4, 4.0))
    numpy.testing.assert_array_equal(b.grad, numpy.ones(4))
    numpy.testing.assert_array_equal(gy, numpy.ones(4))  # the caller's gradient untouched
    kept = x.grad
    (x * 2.0).backward(gy)  # x.grad is autograd's own sum now: added into in place
    assert x.grad is kept
    numpy.testing.assert_array_equal(x.grad, numpy.full(4, 6.0))


def test_a_lent_grad_buffer_receives_the_gradient(rng):
    x, b = leaf(rng, 2, 3), leaf(rng, 2, 3)
    x.grad_buffer = buffer = numpy.full((2, 3), numpy.nan)
    (x + b).backward(numpy.ones((2, 3)))  # the gradient shared with b is copied in
    assert x.grad is buffer and b.grad is not buffer
    (x * 3.0).backward(numpy.ones((2, 3)))
    numpy.testing.assert_array_equal(buffer, numpy.full((2, 3), 4.0))
    numpy.testing.assert_array_equal(b.grad, numpy.ones((2, 3)))
    x.grad = None  # zero_grad: the next gradient overwrites the buffer
    (x * 2.0).backward(numpy.ones((2, 3)))
    assert x.grad is buffer
    numpy.testing.assert_array_equal(buffer, numpy.full((2, 3), 2.0))
    x.grad, x.grad_buffer = None, numpy.zeros((3, 2))  # a buffer of another shape: not used
    (x * 2.0).backward(numpy.ones((2, 3)))
    assert x.grad.shape == (2, 3)

def test_backward_on_a_leaf(rng):
    x = leaf(rng, 2, 2)
    x.backward(numpy.full((2, 2), 7.0))
    numpy.testing.assert_array_equal(x.grad, numpy.full((2, 2), 7.0))


def test_float32_leaf_gets_a_float32_gradient(rng):
    x = mf.Tensor(rng.standard_normal((2, 3)).astype(numpy.float32), requires_grad=True)
    (x * 2.0).backward(numpy.ones((2, 3)))  # a float64 upstream gradient
    assert x.grad.dtype == numpy.float32
    numpy.testing.assert_array_equal(x.grad, numpy.full((2, 3), 2.0, numpy.float32))


# ------------------------------------------------------------------------ depth
def test_deep_chain_does_not_hit_the_recursion_limit(rng):
    """5000 ops, walked with the recursion limit only a little above the current depth:
    building the order and the walk must both be iterative."""
    x = leaf(rng, 3)
    y = x
    for _ in range(5000):
        y = y * 1.0 + x
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 100)
    try:
        y.backward(numpy.ones(3))
    finally:
        sys.setrecursionlimit(limit)
    numpy.testing.assert_array_equal(x.grad, numpy.full(3, 5001.0))


def test_deep_chain_can_be_dropped_without_backward(rng):
    x = leaf(rng, 2)
    y = x
    for _ in range(5000):
        y = F.relu(y)
    del y  # freeing the chain must not recurse into a crash either
    z = F.relu(x)
    z.backward(numpy.ones(2))
    numpy.testing.assert_array_equal(x.grad, (x.data > 0).astype(float))


# ---------------------------------------------------------------------- no_grad
def test_no_grad_records_nothing(rng):
    x = leaf(rng, 1, 2, 4, 4)
    assert mf.is_grad_enabled()
    with mf.no_grad():
        assert not mf.is_grad_enabled()
        y = F.max_pool2d(F.relu(x) + x, 2)
    assert mf.is_grad_enabled()
    assert y.creator is None and not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require a gradient"):
        y.sum().backward()
    assert x.grad is None


def test_no_grad_is_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with mf.no_grad():
            raise ZeroDivisionError
    assert mf.is_grad_enabled()


def test_nested_no_grad():
    with mf.no_grad():
        with mf.no_grad():
            pass
        assert not mf.is_grad_enabled()
    assert mf.is_grad_enabled()


# ------------------------------------------------------------ requires_grad flow
def test_requires_grad_propagation(rng):
    a = mf.Tensor(rng.standard_normal((2, 3)))
    b = leaf(rng, 2, 3)
    constant = a + a
    assert not constant.requires_grad and constant.creator is None
    mixed = a + b
    assert mixed.requires_grad and mixed.creator is not None
    assert mixed.creator.needs_input_grad == (False, True)
    mixed.backward(numpy.ones((2, 3)))
    assert a.grad is None
    numpy.testing.assert_array_equal(b.grad, numpy.ones((2, 3)))


def test_intermediate_tensors_keep_no_grad(rng):
    x = leaf(rng, 3)
    h = x * 2.0
    (h * 3.0).backward(numpy.ones(3))
    assert h.grad is None
    numpy.testing.assert_array_equal(x.grad, numpy.full(3, 6.0))


def test_detach_cuts_the_graph(rng):
    x = leaf(rng, 3)
    d = (x * 2.0).detach()
    assert not d.requires_grad and d.creator is None
    numpy.testing.assert_array_equal(d.data, x.data * 2.0)


def test_tensor_of_a_tensor_is_refused(rng):
    with pytest.raises(TypeError, match="already a Tensor"):
        mf.Tensor(leaf(rng, 2))


def test_function_refuses_a_plain_array(rng):
    class Identity(Function):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="Identity: input 0 is a ndarray"):
        Identity()(rng.standard_normal(3))


# ------------------------------------------------------------- backward's checks
def test_backward_without_grad_on_a_non_scalar_raises(rng):
    y = leaf(rng, 2, 3) * 2.0
    with pytest.raises(ValueError, match=r"one-element.*\(2, 3\)"):
        y.backward()


@pytest.mark.parametrize("shape", [(), (1,), (1, 1, 1, 1)])
def test_backward_without_grad_on_one_element(rng, shape):
    x = mf.Tensor(rng.standard_normal(shape), requires_grad=True)
    (x * 3.0).backward()
    numpy.testing.assert_array_equal(x.grad, numpy.full(shape, 3.0))


def test_backward_with_a_grad_of_the_wrong_shape_raises(rng):
    y = leaf(rng, 2, 3) * 2.0
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        y.backward(numpy.ones((3, 2)))


def test_backward_checks_the_shape_a_function_returns(rng):
    class Broken(Function):
        def forward(self, x):
            return x.sum(axis=0)

        def backward(self, gy):
            return gy  # wrong: should broadcast back to x's shape

    x = leaf(rng, 2, 3)
    with pytest.raises(RuntimeError, match=r"Broken.*\(3,\).*\(2, 3\)"):
        Broken()(x).backward(numpy.ones(3))


# --------------------------------------------------------------------- release
class Probe(Function):
    """Identity that saves a buffer, and notes (through weak references) which buffers
    and which received gradients are still alive each time its backward starts."""

    buffers = []  # weakrefs to each probe's saved buffer, in forward order
    grads = []    # weakrefs to the gradient each probe received, in walk order
    seen = []     # at each backward's start: (buffers alive, gradients alive)

    def forward(self, x):
        self.buffer = numpy.ones(1000)
        Probe.buffers.append(weakref.ref(self.buffer))
        return x.copy()

    def backward(self, gy):
        Probe.seen.append(([ref() is not None for ref in Probe.buffers],
                           [ref() is not None for ref in Probe.grads]))
        Probe.grads.append(weakref.ref(gy))
        return gy * 1.0


def test_release_drops_buffers_and_intermediate_gradients(rng):
    Probe.buffers, Probe.grads, Probe.seen = [], [], []
    x = leaf(rng, 5)
    y = x
    for _ in range(4):
        y = Probe()(y)
    y.backward(numpy.ones(5))
    assert len(Probe.seen) == 4
    for step, (buffers_alive, grads_alive) in enumerate(Probe.seen):
        # the probes walked so far (the last ones built) have dropped their buffers
        assert buffers_alive == [True] * (4 - step) + [False] * step, step
        # only the root's gradient (still held by the caller) outlives its use
        assert grads_alive == [True] * min(step, 1) + [False] * max(step - 1, 0), step
    assert not any(ref() for ref in Probe.buffers)
    assert y.creator.inputs is None
    numpy.testing.assert_array_equal(x.grad, numpy.ones(5))


def test_ops_release_their_saved_inputs(rng):
    x = leaf(rng, 1, 2, 5, 5)
    w = leaf(rng, 3, 2, 3, 3)
    y = F.conv2d(x, w)
    function = y.creator
    assert function.inputs is not None and hasattr(function, "x")
    y.backward(numpy.ones(y.shape))
    assert function.inputs is None and not hasattr(function, "x")


def test_second_backward_through_a_released_graph_raises(rng):
    x = leaf(rng, 3)
    y = F.relu(x) * 2.0
    y.backward(numpy.ones(3))
    with pytest.raises(RuntimeError, match="already"):
        y.backward(numpy.ones(3))


def test_backward_through_a_part_released_by_another_backward_raises(rng):
    x = leaf(rng, 3)
    shared = F.relu(x)
    (shared * 2.0).backward(numpy.ones(3))
    with pytest.raises(RuntimeError, match="already"):
        (shared * 3.0).backward(numpy.ones(3))


def test_a_fresh_forward_after_release_works(rng):
    x = leaf(rng, 3)
    for _ in range(2):
        (F.relu(x) * 2.0).backward(numpy.ones(3))
    numpy.testing.assert_array_equal(x.grad, 4.0 * (x.data > 0))
