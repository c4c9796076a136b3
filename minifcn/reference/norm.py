"""Local response normalization in NumPy: the reference kernels (the math and the
contract: functions/norm.py). Both channel sums are n shifted slices of a zero-padded
copy, so no Python loop runs over pixels or channels. Written against the array API
(they also run on CuPy).
"""
from ..backend import get_array_module


def _window_sum(values, size, before):
    """sum_{o=0}^{size-1} values[:, c - before + o], zero outside [0, C)."""
    xp = get_array_module(values)
    channels = values.shape[1]
    padded = xp.zeros((values.shape[0], channels + size - 1) + values.shape[2:], dtype=values.dtype)
    padded[:, before: before + channels] = values
    total = padded[:, 0: channels].copy()
    for offset in range(1, size):
        total += padded[:, offset: offset + channels]
    return total


def lrn_forward_numpy(x, size, alpha, beta, k):
    scale = k + (alpha / size) * _window_sum(x * x, size, (size - 1) // 2)
    return x * scale ** -beta, scale


def lrn_backward_numpy(x, y, scale, gy, size, alpha, beta):
    # c lies in window(c') for c' in [c - (n-1-pre), c + pre]: the mirrored window.
    pre = (size - 1) // 2
    spread = _window_sum(gy * y / scale, size, size - 1 - pre)
    return gy * scale ** -beta - (2.0 * alpha * beta / size) * x * spread
