"""numba versions of the elementwise passes (contract: reference/elementwise.py).

    relu_backward   gx[i] = gy[i] if y[i] > 0 else 0          one pass, no mask
    bias_grad       gb[c] = sum over n, h, w of gy[n, c, h, w]
    accumulate      total[i] += g[i]                           in place

Loop mapping: prange over the flattened elements (relu_backward, accumulate), over
the channels (bias_grad: each thread sums its channel's N planes in order, so the
result does not depend on the thread count).
"""
import numpy
from numba import njit, prange


@njit(parallel=True, cache=True)
def _relu_backward(y, gy, gx):
    for i in prange(y.size):
        gx[i] = gy[i] if y[i] > 0 else 0


@njit(parallel=True, cache=True)
def _bias_grad(gy, gb):
    images, channels, pixels = gy.shape
    for c in prange(channels):
        total = gy.dtype.type(0)
        for n in range(images):
            for p in range(pixels):
                total += gy[n, c, p]
        gb[c] = total


@njit(parallel=True, cache=True)
def _accumulate(total, g):
    for i in prange(total.size):
        total[i] += g[i]


def relu_backward(y, gy):
    y, gy = numpy.ascontiguousarray(y), numpy.ascontiguousarray(gy)
    gx = numpy.empty_like(gy)
    _relu_backward(y.reshape(-1), gy.reshape(-1), gx.reshape(-1))
    return gx


def bias_grad(gy):
    n, c, h, w = gy.shape
    gb = numpy.empty(c, dtype=gy.dtype)
    _bias_grad(numpy.ascontiguousarray(gy).reshape(n, c, h * w), gb)
    return gb


def accumulate(total, g):
    """total += g in place (total C-contiguous); returns total."""
    if not total.flags.c_contiguous:
        raise ValueError(f"accumulate: total must be C-contiguous, got strides {total.strides} "
                         f"for shape {total.shape}")
    _accumulate(total.reshape(-1), numpy.ascontiguousarray(g, dtype=total.dtype).reshape(-1))
    return total
