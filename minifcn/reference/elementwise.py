"""The elementwise passes of a training step, in NumPy: the reference kernels.
Written against the array API (they also run on CuPy arrays).

    relu_forward    y = max(x, 0), NaN kept           (numpy.maximum's rule)
    relu_backward   gx = gy where y > 0, else 0       from ReLU's saved OUTPUT y: y > 0
                                                      exactly where x > 0, so no mask is kept
    add             y = a + b
    add_bias        y[n, c, h, w] += bias[c], in place
    bias_grad       gb[c] = sum over n, h, w of gy[n, c, h, w]
    accumulate      total += g, in place              (autograd.py: a gradient summed
                                                      into a buffer it owns)
    cast            float32 <-> bf16 (minifcn/bfloat16.py)

relu_forward, add, add_bias and cast also take bf16 arrays (uint16, bfloat16.py), as
the CUDA kernels do: computed in float32 on the decoded values, rounded once to bf16
(the CPU kernel sets never see bf16; these say what the kernels compute).
"""
import numpy

from .. import bfloat16
from ..backend import get_array_module


def relu_forward_numpy(x):
    """max(x, 0) as a new array, NaN kept; a bf16 x keeps its stored bits where x > 0."""
    xp = get_array_module(x)
    values = bfloat16.to_float32(x) if bfloat16.is_bfloat16(x) else x
    return xp.where((values > 0) | xp.isnan(values), x, xp.zeros((), dtype=x.dtype))


def add_numpy(a, b):
    """a + b, a new array of their shape and dtype."""
    if bfloat16.is_bfloat16(a):
        return bfloat16.from_float32(bfloat16.to_float32(a) + bfloat16.to_float32(b))
    return a + b


def add_bias_numpy(y, bias):
    """y (N, C, H, W) += bias[c] in place (bias float32 for a bf16 y); returns y."""
    bias = bias.reshape(1, -1, 1, 1)
    if bfloat16.is_bfloat16(y):
        y[...] = bfloat16.from_float32(bfloat16.to_float32(y) + bias)
    else:
        y += bias
    return y


def cast_numpy(x, dtype):
    """x as a new C-contiguous array of `dtype`: float32 <-> bf16, or a copy."""
    xp = get_array_module(x)
    dtype = numpy.dtype(dtype)
    if x.dtype == dtype:
        return xp.ascontiguousarray(x).copy()
    if x.dtype == numpy.float32 and dtype == bfloat16.DTYPE:
        return bfloat16.from_float32(x)
    if x.dtype == bfloat16.DTYPE and dtype == numpy.float32:
        return xp.ascontiguousarray(bfloat16.to_float32(x))
    raise TypeError(f"cast: converts float32 to bf16 (uint16) and back, not {x.dtype.name} "
                    f"to {dtype.name}")


def relu_backward_numpy(y, gy):
    """gx (y's shape): gy where y > 0, 0 elsewhere (NaN in gy kept where y > 0)."""
    xp = get_array_module(y)
    return xp.where(y > 0, gy, xp.zeros((), dtype=gy.dtype))


def bias_grad_numpy(gy):
    """gy (N, C, H, W) -> (C,), the sum over everything but the channel."""
    return gy.sum(axis=(0, 2, 3))


def accumulate_numpy(total, g):
    """total += g in place (same shape and dtype); returns total."""
    total += g
    return total
