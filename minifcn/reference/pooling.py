"""Max and average pooling in NumPy: the reference kernels (the math and the argmax
contract: functions/pooling.py). One strided view per window cell, never a Python loop
over pixels; written against the array API, so they also run on CuPy arrays.
"""
import numpy

from ..backend import get_array_module

MAX_BYTE_WINDOW = 255  # windows of up to this many cells store their argmax in a uint8


def _padded(x, kh, kw, sy, sx, ph, pw, out_h, out_w, fill):
    """x inside a (N, C, rows, cols) block of `fill` large enough for every window."""
    xp = get_array_module(x)
    n, c, height, width = x.shape
    rows = max((out_h - 1) * sy + kh, height + ph)
    cols = max((out_w - 1) * sx + kw, width + pw)
    xpad = xp.full((n, c, rows, cols), fill, dtype=x.dtype)
    xpad[:, :, ph: ph + height, pw: pw + width] = x
    return xpad


def _window(xpad, i, j, sy, sx, out_h, out_w):
    """The (N, C, out_h, out_w) view of cell (i, j) of every window."""
    return xpad[:, :, i: i + sy * out_h: sy, j: j + sx * out_w: sx]


def max_pool_offset_dtype(kh, kw):
    """The argmax array's dtype for a kh x kw window: uint8 when every offset in the
    window (0 .. kh*kw - 1) fits in a byte with one value to spare (kh*kw <= 255), else
    int32. One byte per output instead of four: the backward pass reads the argmax of
    every window, and a byte is a quarter of what a flat index costs to store and load."""
    return numpy.uint8 if kh * kw <= MAX_BYTE_WINDOW else numpy.int32


def max_pool_forward_numpy(x, kh, kw, sy, sx, ph, pw, out_h, out_w):
    """x (N, C, H, W) -> (y, argmax): argmax the offset i * kw + j, inside its window, of
    the cell (i, j) that holds the maximum (dtype: `max_pool_offset_dtype`)."""
    xp = get_array_module(x)
    xpad = _padded(x, kh, kw, sy, sx, ph, pw, out_h, out_w, -xp.inf)
    y = _window(xpad, 0, 0, sy, sx, out_h, out_w).copy()
    best = xp.zeros(y.shape, dtype=xp.int32)  # window cell i * kw + j of the max so far
    for i in range(kh):
        for j in range(kw):
            if i == 0 and j == 0:
                continue
            candidate = _window(xpad, i, j, sy, sx, out_h, out_w)
            # Strictly larger, or the first NaN: ties keep the first maximum in scan
            # order, and a NaN, once taken, is never replaced (NaN > v is always false).
            better = (candidate > y) | (xp.isnan(candidate) & ~xp.isnan(y))
            y[better] = candidate[better]
            best[better] = i * kw + j
    # Padding (-inf) never wins, so the argmax lies in the padding only when it is cell
    # (0, 0) and nothing beat it (every real pixel -inf): the first real pixel, cell
    # (max(-top, 0), max(-left, 0)), is then the first maximum in scan order.
    first_i = xp.maximum(ph - xp.arange(out_h) * sy, 0)[:, None]
    first_j = xp.maximum(pw - xp.arange(out_w) * sx, 0)[None, :]
    best = xp.where(best == 0, first_i * kw + first_j, best)
    return y, best.astype(max_pool_offset_dtype(kh, kw))


def max_pool_backward_numpy(gy, argmax, height, width, kh, kw, sy, sx, ph, pw):
    """Scatter gy to the cell of each window that argmax names: gx (N, C, height, width)."""
    xp = get_array_module(gy)
    n, c, out_h, out_w = gy.shape
    offset = argmax.astype(xp.int64)
    rows = xp.arange(out_h, dtype=xp.int64)[:, None] * sy - ph + offset // kw
    cols = xp.arange(out_w, dtype=xp.int64)[None, :] * sx - pw + offset % kw
    plane_start = xp.arange(n * c, dtype=xp.int64).reshape(n, c, 1, 1) * (height * width)
    flat = plane_start + rows * width + cols
    gx = xp.bincount(flat.ravel(), weights=gy.ravel(), minlength=n * c * height * width)
    return gx.astype(gy.dtype).reshape(n, c, height, width)


def _pool_sizes(size, kernel, stride, pad, out):
    """Caffe's divisor along one axis: each window clipped to [-pad, size + pad)."""
    xp_starts = [o * stride - pad for o in range(out)]
    return [min(start + kernel, size + pad) - start for start in xp_starts]


def _avg_divisor(xp, dtype, height, width, kh, kw, sy, sx, ph, pw, out_h, out_w):
    rows = xp.asarray(_pool_sizes(height, kh, sy, ph, out_h), dtype=dtype)
    cols = xp.asarray(_pool_sizes(width, kw, sx, pw, out_w), dtype=dtype)
    return rows[:, None] * cols[None, :]


def avg_pool_forward_numpy(x, kh, kw, sy, sx, ph, pw, out_h, out_w):
    xp = get_array_module(x)
    xpad = _padded(x, kh, kw, sy, sx, ph, pw, out_h, out_w, 0)
    total = xp.zeros(x.shape[:2] + (out_h, out_w), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            total += _window(xpad, i, j, sy, sx, out_h, out_w)
    return total / _avg_divisor(xp, x.dtype, *x.shape[2:], kh, kw, sy, sx, ph, pw, out_h, out_w)


def avg_pool_backward_numpy(gy, height, width, kh, kw, sy, sx, ph, pw):
    xp = get_array_module(gy)
    n, c, out_h, out_w = gy.shape
    share = gy / _avg_divisor(xp, gy.dtype, height, width, kh, kw, sy, sx, ph, pw, out_h, out_w)
    gxpad = _padded(xp.zeros((n, c, height, width), dtype=gy.dtype),
                    kh, kw, sy, sx, ph, pw, out_h, out_w, 0)
    for i in range(kh):
        for j in range(kw):
            _window(gxpad, i, j, sy, sx, out_h, out_w)[...] += share
    return xp.ascontiguousarray(gxpad[:, :, ph: ph + height, pw: pw + width])
