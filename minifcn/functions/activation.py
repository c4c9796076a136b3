"""Activations.

    relu      y = max(x, 0)                    gx = gy * [y > 0]   ([y > 0] = [x > 0])
    dropout   y = x * m / (1 - p),  m ~ Bernoulli(1 - p)   gx = gy * m / (1 - p)
              (inverted dropout: at test time, or training=False, y = x)

ReLU keeps its output y for backward (an in-place ReLU's y is what it wrote over x),
so forward makes no mask and backward is one pass (kernels_for(y).relu_backward:
gx = gy where y > 0) where a bool mask took a compare pass and a multiply pass. Memory,
by count: where a convolution follows, y is alive anyway (the convolution keeps its
input), and the mask's byte per element is saved; where a max pooling or dropout
follows (they keep no input), y is kept for ReLU alone, 4 bytes per float32 element
where the mask took 1. For FCN-32s at 500x500 (relu1_2, 2_2, 3_3, 4_3, 5_3, 6, 7 are
the second kind) that is about 247 MB of kept outputs per image against 134 MB of
masks before; benchmarks/results/inplace-relu/ is the measurement to repeat.
`relu(x, inplace=True)` writes y over x, as Caffe's in-place ReLU layers do (the FCNs'
relu1_1 has top conv1_1): a convolution's output, which nothing but the ReLU reads,
then needs no second buffer of its size (FCN-32s at 500x500 trains in 2.82 GiB instead
of 3.33: benchmarks/results/inplace-relu/).

Dropout keeps nothing. Its mask is a function of a seed (one draw from minifcn's
generator per call) and the element's flat index i:

    m[i] = [SplitMix64(seed, i) >> 11  >=  ceil(p 2^53)]

53 uniform random bits against p in the same units, so P(m = 1) = 1 - p to 2^-53.
Backward recomputes m from the seed, in the same function as forward: gx is the
forward applied to gy. The NumPy, numba and CUDA kernels (reference/dropout.py,
cpu/dropout.py, kernels/dropout.cu) compute the same bits, the last two in one pass, so
a seed gives the same masks on the CPU and the GPU, and no mask is stored between the
passes.
"""
import math
import numbers

from ..autograd import Function
from .. import backend, graph
from .validate import float_tensor


class ReLU(Function):
    def __init__(self, inplace=False):
        self.inplace = inplace

    def forward(self, x):
        xp = backend.get_array_module(x)
        y = xp.maximum(x, 0, out=x if self.inplace else None)
        if self.needs_input_grad[0]:
            self.y = y
        return y

    def backward(self, gy):
        return backend.kernels_for(gy).relu_backward(self.y, gy)


def relu(x, inplace=False):
    """max(x, 0); inplace=True overwrites x, which must then be read by nothing else (a
    leaf that requires a gradient is refused: its value would be lost)."""
    x = float_tensor("relu", "x", x)
    if inplace and x.requires_grad and x.creator is None:
        raise ValueError(f"relu: inplace=True on a leaf tensor {x.shape} that requires a "
                         f"gradient would overwrite it; use inplace=False")
    return ReLU(inplace)(x)


class Dropout(Function):
    def __init__(self, p, seed):
        self.seed, self.threshold = seed, math.ceil(p * 2**53)  # p 2^53 is exact
        self.scale = 1.0 / (1.0 - p)

    def forward(self, x):
        return self._apply_mask(x)

    def backward(self, gy):
        return self._apply_mask(gy)

    def _apply_mask(self, array):
        return backend.kernels_for(array).dropout(
            array, self.seed, self.threshold, self.scale)


def dropout(x, p=0.5, training=True):
    x = float_tensor("dropout", "x", x)
    if not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p!r}")
    if not training or p == 0.0:
        return x
    return Dropout(float(p), seed=graph.draw_seed())(x)  # a device slot in a captured step
