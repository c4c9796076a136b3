"""The elementwise passes of a training step, in NumPy: the reference kernels.
Written against the array API (they also run on CuPy arrays).

    relu_backward   gx = gy where y > 0, else 0       from ReLU's saved OUTPUT y: y > 0
                                                      exactly where x > 0, so no mask is kept
    bias_grad       gb[c] = sum over n, h, w of gy[n, c, h, w]
    accumulate      total += g, in place              (autograd.py: a gradient summed
                                                      into a buffer it owns)
"""
from ..backend import get_array_module


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
