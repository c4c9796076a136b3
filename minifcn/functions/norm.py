"""Local response normalization across channels (Caffe LRN, AlexNet and GoogLeNet).

With n = size and the window of channel c being [c - (n-1)//2, c - (n-1)//2 + n):

    scale_c = k + (alpha / n) * sum_{c' in window(c)} x_c'^2
    y_c     = x_c * scale_c^(-beta)
    gx_c    = gy_c * scale_c^(-beta)
              - (2 alpha beta / n) * x_c * sum_{c' : c in window(c')} gy_c' y_c' / scale_c'

Both channel sums are n shifted slices of a zero-padded copy, so no Python loop runs
over pixels or channels. Kernel contract: lrn_forward(x, n, alpha, beta, k) ->
(y, scale); lrn_backward(x, y, scale, gy, n, alpha, beta) -> gx.
"""
import numbers

from ..autograd import Function
from .. import backend
from .validate import float_tensor


def _window_sum(values, size, before):
    """sum_{o=0}^{size-1} values[:, c - before + o], zero outside [0, C)."""
    xp = backend.get_array_module(values)
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


class LocalResponseNorm(Function):
    def __init__(self, size, alpha, beta, k):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        y, scale = backend.kernel("lrn_forward", x, lrn_forward_numpy)(
            x, self.size, self.alpha, self.beta, self.k)
        self.x, self.y, self.scale = x, y, scale
        return y

    def backward(self, gy):
        return backend.kernel("lrn_backward", gy, lrn_backward_numpy)(
            self.x, self.y, self.scale, gy, self.size, self.alpha, self.beta)


def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    op = "local_response_norm"
    x = float_tensor(op, "x", x, ndim=4)
    if not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"{op}: size must be a positive int, got {size!r}")
    if k <= 0:
        raise ValueError(f"{op}: k must be > 0 so the scale stays positive, got {k!r}")
    return LocalResponseNorm(int(size), float(alpha), float(beta), float(k))(x)
