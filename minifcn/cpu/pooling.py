"""numba max and average pooling, forward and backward (contracts: functions/pooling.py;
the NumPy versions: reference/pooling.py).

Output (oy, ox) of an image plane covers the window rows [oy s_y - p_y, + kh) and
columns [ox s_x - p_x, + kw), clipped here to the real pixels [0, H) x [0, W):

    max   y = max over the window, padding -inf, NaN above everything (a NaN anywhere
          in the window gives NaN, as in PyTorch); argmax = the offset i * kw + j inside
          the window of the first maximum in scan order (rows, then columns: a cell is
          taken when strictly larger, or when it is the first NaN), uint8 for windows of
          up to 255 cells (reference/pooling.py, max_pool_offset_dtype); a window whose
          real pixels are all -inf sends its gradient to its first real pixel
          gx[top + argmax // kw, left + argmax % kw] += gy
    avg   y = (sum over the window) / pool_size, pool_size = Caffe's: the window clipped
          to the padded input [-p, H + p), so padded cells count, the ceil overhang not
          gx[window] += gy / pool_size

Loop mapping: prange over the N * C image planes. A plane's outputs only read and
write that plane, so the backward scatters need no atomics.
"""
import numpy
from numba import njit, prange

from ..reference.pooling import max_pool_offset_dtype


@njit(inline="always")
def _window(oy, ox, kh, kw, sy, sx, ph, pw, height, width):
    """Output (oy, ox)'s window: its top-left cell (may be padding) and its real rows
    [row_lo, row_hi) and columns [col_lo, col_hi)."""
    top, left = oy * sy - ph, ox * sx - pw
    return (top, left, max(top, 0), min(top + kh, height), max(left, 0),
            min(left + kw, width))


@njit(parallel=True, cache=True)
def _max_pool_forward(x, kh, kw, sy, sx, ph, pw, y, argmax):
    n_images, channels, height, width = x.shape
    out_h, out_w = y.shape[2], y.shape[3]
    for plane in prange(n_images * channels):
        n, c = plane // channels, plane % channels
        for oy in range(out_h):
            for ox in range(out_w):
                top, left, row_lo, row_hi, col_lo, col_hi = _window(
                    oy, ox, kh, kw, sy, sx, ph, pw, height, width)
                # Nothing beats -inf strictly: then the first real pixel takes the gradient.
                best = -numpy.inf
                best_at = (row_lo - top) * kw + col_lo - left
                for h in range(row_lo, row_hi):
                    for w in range(col_lo, col_hi):
                        value = x[n, c, h, w]
                        if value > best or (numpy.isnan(value) and not numpy.isnan(best)):
                            best, best_at = value, (h - top) * kw + w - left
                y[n, c, oy, ox] = best
                argmax[n, c, oy, ox] = best_at


@njit(parallel=True, cache=True)
def _max_pool_backward(gy, argmax, kw, sy, sx, ph, pw, gx):
    n_images, channels, out_h, out_w = gy.shape
    for plane in prange(n_images * channels):
        n, c = plane // channels, plane % channels
        for oy in range(out_h):
            for ox in range(out_w):
                at = numpy.int64(argmax[n, c, oy, ox])
                gx[n, c, oy * sy - ph + at // kw, ox * sx - pw + at % kw] += gy[n, c, oy, ox]


@njit(inline="always")
def _avg_window(oy, ox, kh, kw, sy, sx, ph, pw, height, width):
    """The real rows and columns of output (oy, ox)'s window, and Caffe's divisor: the
    window's area clipped to the padded input [-p, size + p)."""
    top, left, row_lo, row_hi, col_lo, col_hi = _window(oy, ox, kh, kw, sy, sx, ph, pw,
                                                        height, width)
    divisor = (min(top + kh, height + ph) - top) * (min(left + kw, width + pw) - left)
    return row_lo, row_hi, col_lo, col_hi, divisor


@njit(parallel=True, cache=True)
def _avg_pool_forward(x, kh, kw, sy, sx, ph, pw, y):
    n_images, channels, height, width = x.shape
    out_h, out_w = y.shape[2], y.shape[3]
    for plane in prange(n_images * channels):
        n, c = plane // channels, plane % channels
        for oy in range(out_h):
            for ox in range(out_w):
                row_lo, row_hi, col_lo, col_hi, divisor = _avg_window(
                    oy, ox, kh, kw, sy, sx, ph, pw, height, width)
                total = y.dtype.type(0)
                for h in range(row_lo, row_hi):
                    for w in range(col_lo, col_hi):
                        total += x[n, c, h, w]
                y[n, c, oy, ox] = total / y.dtype.type(divisor)


@njit(parallel=True, cache=True)
def _avg_pool_backward(gy, kh, kw, sy, sx, ph, pw, gx):
    n_images, channels, out_h, out_w = gy.shape
    height, width = gx.shape[2], gx.shape[3]
    for plane in prange(n_images * channels):
        n, c = plane // channels, plane % channels
        for oy in range(out_h):
            for ox in range(out_w):
                row_lo, row_hi, col_lo, col_hi, divisor = _avg_window(
                    oy, ox, kh, kw, sy, sx, ph, pw, height, width)
                share = gy[n, c, oy, ox] / gy.dtype.type(divisor)
                for h in range(row_lo, row_hi):
                    for w in range(col_lo, col_hi):
                        gx[n, c, h, w] += share


def max_pool_forward(x, kh, kw, sy, sx, ph, pw, out_h, out_w):
    """x (N, C, H, W) -> (y, argmax: each maximum's offset inside its window)."""
    y = numpy.empty(x.shape[:2] + (out_h, out_w), dtype=x.dtype)
    argmax = numpy.empty(y.shape, dtype=max_pool_offset_dtype(kh, kw))
    _max_pool_forward(numpy.ascontiguousarray(x), kh, kw, sy, sx, ph, pw, y, argmax)
    return y, argmax


def max_pool_backward(gy, argmax, height, width, kh, kw, sy, sx, ph, pw):
    gx = numpy.zeros(gy.shape[:2] + (height, width), dtype=gy.dtype)
    _max_pool_backward(numpy.ascontiguousarray(gy), numpy.ascontiguousarray(argmax),
                       kw, sy, sx, ph, pw, gx)
    return gx


def avg_pool_forward(x, kh, kw, sy, sx, ph, pw, out_h, out_w):
    y = numpy.empty(x.shape[:2] + (out_h, out_w), dtype=x.dtype)
    _avg_pool_forward(numpy.ascontiguousarray(x), kh, kw, sy, sx, ph, pw, y)
    return y


def avg_pool_backward(gy, height, width, kh, kw, sy, sx, ph, pw):
    gx = numpy.zeros(gy.shape[:2] + (height, width), dtype=gy.dtype)
    _avg_pool_backward(numpy.ascontiguousarray(gy), kh, kw, sy, sx, ph, pw, gx)
    return gx
