"""Max and average pooling over kh x kw windows with stride s and padding p.

    max   y[oy, ox] = max over the window of xpad (padding is -inf)
          gx[h, w]  = sum of gy over the windows whose *first* maximum (scan order:
                      rows, then columns) is at (h, w)
    avg   y[oy, ox] = (sum over the window of xpad, padding 0) / pool_size
          gx[h, w]  = sum of gy / pool_size over the windows that contain (h, w)

pool_size is Caffe's: the window clipped to the padded input [-p, H + p), so padded
cells count but the overhang that ceil rounding adds does not.

Output size, rows (columns alike): floor mode (H + 2p - k) // s + 1; ceil mode (Caffe's
pooling) ceil((H + 2p - k) / s) + 1, minus one when the last window would start in the
bottom padding, i.e. at row >= H (so every window holds at least one real pixel).

Max pooling saves, per output, the flat index h * W + w of its maximum in the input
plane ("argmax"): backward scatters gy there. Every kernel set shares that contract.
"""
import math

from ..autograd import Function
from .. import backend
from .validate import float_tensor, pair


def pool_output_size(size, kernel, stride, pad, ceil_mode):
    if ceil_mode:
        out = math.ceil((size + 2 * pad - kernel) / stride) + 1
        if (out - 1) * stride >= size + pad:
            out -= 1
        return out
    return (size + 2 * pad - kernel) // stride + 1


def _padded(x, kh, kw, sy, sx, ph, pw, out_h, out_w, fill):
    """x inside a (N, C, rows, cols) block of `fill` large enough for every window."""
    xp = backend.get_array_module(x)
    n, c, height, width = x.shape
    rows = max((out_h - 1) * sy + kh, height + ph)
    cols = max((out_w - 1) * sx + kw, width + pw)
    xpad = xp.full((n, c, rows, cols), fill, dtype=x.dtype)
    xpad[:, :, ph: ph + height, pw: pw + width] = x
    return xpad


def _window(xpad, i, j, sy, sx, out_h, out_w):
    """The (N, C, out_h, out_w) view of cell (i, j) of every window."""
    return xpad[:, :, i: i + sy * out_h: sy, j: j + sx * out_w: sx]


def max_pool_forward_numpy(x, kh, kw, sy, sx, ph, pw, out_h, out_w):
    """x (N, C, H, W) -> (y, argmax), argmax int32 flat indices into the H x W plane."""
    xp = backend.get_array_module(x)
    width = x.shape[3]
    xpad = _padded(x, kh, kw, sy, sx, ph, pw, out_h, out_w, -xp.inf)
    y = _window(xpad, 0, 0, sy, sx, out_h, out_w).copy()
    best = xp.zeros(y.shape, dtype=xp.int32)  # window cell i * kw + j of the max so far
    for i in range(kh):
        for j in range(kw):
            if i == 0 and j == 0:
                continue
            candidate = _window(xpad, i, j, sy, sx, out_h, out_w)
            better = candidate > y  # strict: the first maximum in scan order wins ties
            y[better] = candidate[better]
            best[better] = i * kw + j
    # Padding (-inf) never wins a strict comparison, so the argmax lies in the padding
    # only when it is cell (0, 0) and no real pixel beat it (all -inf): the first real
    # pixel, (max(row, 0), max(col, 0)), is then the first maximum in scan order.
    rows = xp.maximum(xp.arange(out_h, dtype=xp.int32)[:, None] * sy - ph + best // kw, 0)
    cols = xp.maximum(xp.arange(out_w, dtype=xp.int32)[None, :] * sx - pw + best % kw, 0)
    return y, (rows * width + cols).astype(xp.int32)


def max_pool_backward_numpy(gy, argmax, height, width, kh, kw, sy, sx, ph, pw):
    """Scatter gy to the argmax of each window: gx (N, C, height, width)."""
    xp = backend.get_array_module(gy)
    n, c = gy.shape[:2]
    plane = height * width
    plane_start = xp.arange(n * c, dtype=xp.int64).reshape(n, c, 1, 1) * plane
    gx = xp.bincount((plane_start + argmax).ravel(), weights=gy.ravel(), minlength=n * c * plane)
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
    xp = backend.get_array_module(x)
    xpad = _padded(x, kh, kw, sy, sx, ph, pw, out_h, out_w, 0)
    total = xp.zeros(x.shape[:2] + (out_h, out_w), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            total += _window(xpad, i, j, sy, sx, out_h, out_w)
    return total / _avg_divisor(xp, x.dtype, *x.shape[2:], kh, kw, sy, sx, ph, pw, out_h, out_w)


def avg_pool_backward_numpy(gy, height, width, kh, kw, sy, sx, ph, pw):
    xp = backend.get_array_module(gy)
    n, c, out_h, out_w = gy.shape
    share = gy / _avg_divisor(xp, gy.dtype, height, width, kh, kw, sy, sx, ph, pw, out_h, out_w)
    gxpad = _padded(xp.zeros((n, c, height, width), dtype=gy.dtype),
                    kh, kw, sy, sx, ph, pw, out_h, out_w, 0)
    for i in range(kh):
        for j in range(kw):
            _window(gxpad, i, j, sy, sx, out_h, out_w)[...] += share
    return xp.ascontiguousarray(gxpad[:, :, ph: ph + height, pw: pw + width])


class MaxPooling2D(Function):
    def __init__(self, window):
        self.window = window  # (kh, kw, sy, sx, ph, pw)

    def forward(self, x):
        out_size = self.out_size
        y, argmax = backend.kernel("max_pool_forward", x, max_pool_forward_numpy)(
            x, *self.window, *out_size)
        self.in_size, self.argmax = x.shape[2:], argmax
        return y

    def backward(self, gy):
        return backend.kernel("max_pool_backward", gy, max_pool_backward_numpy)(
            gy, self.argmax, *self.in_size, *self.window)


class AveragePooling2D(Function):
    def __init__(self, window):
        self.window = window

    def forward(self, x):
        self.in_size = x.shape[2:]
        return backend.kernel("avg_pool_forward", x, avg_pool_forward_numpy)(
            x, *self.window, *self.out_size)

    def backward(self, gy):
        return backend.kernel("avg_pool_backward", gy, avg_pool_backward_numpy)(
            gy, *self.in_size, *self.window)


def _pool(function_class, op, x, kernel_size, stride, padding, ceil_mode):
    x = float_tensor(op, "x", x, ndim=4)
    kh, kw = pair(op, "kernel_size", kernel_size)
    sy, sx = pair(op, "stride", kernel_size if stride is None else stride)
    ph, pw = pair(op, "padding", padding, minimum=0)
    if ph >= kh or pw >= kw:
        raise ValueError(f"{op}: padding {(ph, pw)} must be smaller than the window {(kh, kw)}")
    height, width = x.shape[2:]
    if min(x.shape) < 1:
        raise ValueError(f"{op}: x {x.shape} is empty")
    if kh > height + 2 * ph or kw > width + 2 * pw:
        raise ValueError(f"{op}: the {kh}x{kw} window is larger than the padded input "
                         f"({height}+2*{ph})x({width}+2*{pw}) of x {x.shape}")
    function = function_class((kh, kw, sy, sx, ph, pw))
    function.out_size = (pool_output_size(height, kh, sy, ph, ceil_mode),
                         pool_output_size(width, kw, sx, pw, ceil_mode))
    return function(x)


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    return _pool(MaxPooling2D, "max_pool2d", x, kernel_size, stride, padding, ceil_mode)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    return _pool(AveragePooling2D, "avg_pool2d", x, kernel_size, stride, padding, ceil_mode)
