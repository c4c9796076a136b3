"""Max and average pooling over kh x kw windows with stride s and padding p.

    max   y[oy, ox] = max over the window of xpad (padding is -inf); a NaN anywhere in
                      the window gives NaN (PyTorch's rule: a NaN is never hidden)
          gx[h, w]  = sum of gy over the windows whose *first* maximum (scan order:
                      rows, then columns; the first NaN if there is one) is at (h, w)
    avg   y[oy, ox] = (sum over the window of xpad, padding 0) / pool_size
          gx[h, w]  = sum of gy / pool_size over the windows that contain (h, w)

pool_size is Caffe's: the window clipped to the padded input [-p, H + p), so padded
cells count but the overhang that ceil rounding adds does not.

Output size, rows (columns alike): floor mode (H + 2p - k) // s + 1; ceil mode (Caffe's
pooling) ceil((H + 2p - k) / s) + 1, minus one when the last window would start in the
bottom padding, i.e. at row >= H (so every window holds at least one real pixel).

Max pooling saves, per output, the offset i * kw + j of its maximum inside its window
("argmax"; cell (i, j) is input pixel (oy*sy - ph + i, ox*sx - pw + j)): one byte
(uint8) for windows of up to 255 cells, int32 for larger ones
(reference/pooling.py, max_pool_offset_dtype), a quarter of what a flat index costs.
Backward sends gy there; the CUDA kernel gathers, each input pixel reading the argmax
of the windows that cover it. Every kernel set shares that contract (kernel_set.py);
the NumPy versions are in reference/pooling.py.
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


class MaxPooling2D(Function):
    def __init__(self, window):
        self.window = window  # (kh, kw, sy, sx, ph, pw)

    def forward(self, x):
        out_size = self.out_size
        y, argmax = backend.kernels_for(x).max_pool_forward(
            x, *self.window, *out_size)
        self.in_size, self.argmax = x.shape[2:], argmax
        return y

    def backward(self, gy):
        return backend.kernels_for(gy).max_pool_backward(
            gy, self.argmax, *self.in_size, *self.window)


class AveragePooling2D(Function):
    def __init__(self, window):
        self.window = window

    def forward(self, x):
        self.in_size = x.shape[2:]
        return backend.kernels_for(x).avg_pool_forward(
            x, *self.window, *self.out_size)

    def backward(self, gy):
        return backend.kernels_for(gy).avg_pool_backward(
            gy, *self.in_size, *self.window)


def _pool(function_class, op, x, kernel_size, stride, padding, ceil_mode):
    x = float_tensor(op, "x", x, ndim=4, bf16=True)
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
