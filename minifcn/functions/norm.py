"""Local response normalization across channels (Caffe LRN, AlexNet and GoogLeNet).

With n = size and the window of channel c being [c - (n-1)//2, c - (n-1)//2 + n):

    scale_c = k + (alpha / n) * sum_{c' in window(c)} x_c'^2
    y_c     = x_c * scale_c^(-beta)
    gx_c    = gy_c * scale_c^(-beta)
              - (2 alpha beta / n) * x_c * sum_{c' : c in window(c')} gy_c' y_c' / scale_c'

Kernel contract (kernel_set.py; NumPy: reference/norm.py): lrn_forward(x, n, alpha,
beta, k) -> (y, scale); lrn_backward(x, y, scale, gy, n, alpha, beta) -> gx.
"""
import numbers

from ..autograd import Function
from .. import backend
from .validate import float_tensor


class LocalResponseNorm(Function):
    def __init__(self, size, alpha, beta, k):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        y, scale = backend.kernels_for(x).lrn_forward(
            x, self.size, self.alpha, self.beta, self.k)
        self.x, self.y, self.scale = x, y, scale
        return y

    def backward(self, gy):
        return backend.kernels_for(gy).lrn_backward(
            self.x, self.y, self.scale, gy, self.size, self.alpha, self.beta)


def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    op = "local_response_norm"
    x = float_tensor(op, "x", x, ndim=4, bf16=True)
    if not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"{op}: size must be a positive int, got {size!r}")
    if k <= 0:
        raise ValueError(f"{op}: k must be > 0 so the scale stays positive, got {k!r}")
    return LocalResponseNorm(int(size), float(alpha), float(beta), float(k))(x)
