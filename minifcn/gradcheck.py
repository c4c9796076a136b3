"""Gradient checking by float64 central differences; use it on your own ops too.

check_backward(fn, inputs) compares the analytic gradient of <fn(*inputs), r>, for a
random projection r, against (f(x + eps) - f(x - eps)) / (2 eps) element by element,
every input cast to float64 first. An element passes when
|analytic - numeric| <= atol + rtol * |numeric|. Integer inputs (labels) are passed
through and not differentiated.
"""
import numpy

from .autograd import Tensor, no_grad
from . import backend


def _as_float64_leaf(value):
    data = value.data if isinstance(value, Tensor) else backend.as_array(value)
    if data.dtype.kind != "f":
        return Tensor(data), False
    # C order: the flat view below must perturb the leaf itself, not a copy of it
    return Tensor(data.astype(numpy.float64, order="C"), requires_grad=True), True


def check_backward(fn, inputs, eps=1e-3, atol=1e-5, rtol=1e-4, seed=0):
    """Raise AssertionError naming the input and element whose gradient is most wrong."""
    if isinstance(inputs, (Tensor,)) or hasattr(inputs, "shape"):
        inputs = [inputs]
    leaves, differentiable = zip(*(_as_float64_leaf(x) for x in inputs))
    output = fn(*leaves)
    if not isinstance(output, Tensor):
        raise TypeError(f"check_backward: fn must return a Tensor, got {type(output).__name__}")
    xp = backend.get_array_module(output.data)
    projection = xp.asarray(numpy.random.default_rng(seed).standard_normal(output.shape))
    output.backward(projection)

    def objective():
        with no_grad():
            return float((fn(*leaves).data * projection).sum())

    for position, (leaf, wanted) in enumerate(zip(leaves, differentiable)):
        if not wanted:
            continue
        analytic = backend.to_numpy(leaf.grad if leaf.grad is not None
                                    else xp.zeros_like(leaf.data))
        numeric = numpy.empty(leaf.shape)
        flat = leaf.data.reshape(-1)  # a view: perturbing it perturbs the input
        for index in range(flat.size):
            original = float(flat[index])
            flat[index] = original + eps
            above = objective()
            flat[index] = original - eps
            below = objective()
            flat[index] = original
            numeric.flat[index] = (above - below) / (2 * eps)
        excess = numpy.abs(analytic - numeric) - (atol + rtol * numpy.abs(numeric))
        worst = int(numpy.argmax(excess)) if excess.size else 0
        if excess.size and excess.flat[worst] > 0:
            where = tuple(int(i) for i in numpy.unravel_index(worst, leaf.shape))
            raise AssertionError(
                f"check_backward: input {position} (shape {leaf.shape}) element {where}: "
                f"analytic {analytic.flat[worst]:.8g} vs numeric {numeric.flat[worst]:.8g} "
                f"(|diff| {abs(analytic.flat[worst] - numeric.flat[worst]):.3g} > "
                f"atol {atol} + rtol {rtol} * |numeric|)")
