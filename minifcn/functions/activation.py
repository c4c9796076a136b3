"""Activations.

    relu      y = max(x, 0)                    gx = gy * [x > 0]
    dropout   y = x * m / (1 - p),  m ~ Bernoulli(1 - p)   gx = gy * m / (1 - p)
              (inverted dropout: at test time, or training=False, y = x)

ReLU keeps only the sign mask for backward (one byte per element, not the input);
dropout keeps its scaled mask. `relu(x, inplace=True)` writes y over x, as Caffe's
in-place ReLU layers do (the FCNs' relu1_1 has top conv1_1): a convolution's output,
which nothing but the ReLU reads, then needs no second buffer of its size (FCN-32s
at 500x500 trains in about 0.5 GB less memory).
"""
import numbers

from ..autograd import Function
from .. import backend
from .validate import float_tensor


class ReLU(Function):
    def __init__(self, inplace=False):
        self.inplace = inplace

    def forward(self, x):
        xp = backend.get_array_module(x)
        if self.needs_input_grad[0]:
            self.positive = x > 0
        return xp.maximum(x, 0, out=x if self.inplace else None)

    def backward(self, gy):
        return gy * self.positive


def relu(x, inplace=False):
    """max(x, 0); inplace=True overwrites x, which must then be read by nothing else (a
    leaf that requires a gradient is refused: its value would be lost)."""
    x = float_tensor("relu", "x", x)
    if inplace and x.requires_grad and x.creator is None:
        raise ValueError(f"relu: inplace=True on a leaf tensor {x.shape} that requires a "
                         f"gradient would overwrite it; use inplace=False")
    return ReLU(inplace)(x)


class Dropout(Function):
    def __init__(self, p):
        self.p = p

    def forward(self, x):
        xp = backend.get_array_module(x)
        keep = _uniform(xp, x.shape) >= self.p
        self.mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


def _uniform(xp, shape):
    """Uniform [0, 1) draws from minifcn's seeded generator (backend.seed)."""
    if xp.__name__ == "numpy":
        return backend.rng().random(shape, dtype="float32")
    # On the GPU draw there, seeded from the host generator so runs stay reproducible.
    seed = int(backend.rng().integers(2**63))
    return xp.random.default_rng(seed).random(shape, dtype="float32")


def dropout(x, p=0.5, training=True):
    x = float_tensor("dropout", "x", x)
    if not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p!r}")
    if not training or p == 0.0:
        return x
    return Dropout(float(p))(x)
