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
of 3.33: benchmarks/results/inplace-relu/). A bf16 x (uint16 storage, bfloat16.py)
goes through the kernel set's relu_forward (a uint16 maximum would take a negative
value's sign bit for a large integer), into a new array that `inplace` copies back
over x: a second pass, but the memory of Caffe's in-place layer.

Dropout keeps nothing. Its mask is a function of a seed (one draw from minifcn's
generator per call) and the element's flat index i:

    m[i] = [SplitMix64(seed, i) >> 11  >=  ceil(p 2^53)]

53 uniform random bits against p in the same units, so P(m = 1) = 1 - p to 2^-53.
Backward recomputes m from the seed, in the same function as forward: gx is the
forward applied to gy. The NumPy, numba and CUDA kernels (reference/dropout.py,
cpu/dropout.py, kernels/dropout.cu) compute the same bits, the last two in one pass, so
a seed gives the same masks on the CPU and the GPU, and no mask is stored between the
passes.

`dropout(x)` draws its masks per image: image n of the batch x (N, ...) gets the mask
of seed_n = SplitMix64(seed, first + n) >> 1 over its own flat index, `first` being
the index in the global batch of this process's first image (0 but in a distributed run,
where distributed.py sets it with `images_from`). So an image's mask depends on (seed,
its place in the global batch) only, and N processes sharing a batch draw the masks one
process would. `Dropout(p, seed)` alone masks x as one flat array.
"""
import contextlib
import math
import numbers

from ..autograd import Function
from .. import backend, bfloat16, graph
from ..reference.dropout import GOLDEN_GAMMA, MIX1, MIX2
from .validate import float_tensor


class ReLU(Function):
    def __init__(self, inplace=False):
        self.inplace = inplace

    def forward(self, x):
        if bfloat16.is_bfloat16(x):
            y = backend.kernels_for(x).relu_forward(x)
            if self.inplace:
                x[...] = y
                y = x
        else:
            y = backend.get_array_module(x).maximum(x, 0, out=x if self.inplace else None)
        if self.needs_input_grad[0]:
            self.y = y
        return y

    def backward(self, gy):
        return backend.kernels_for(gy).relu_backward(self.y, gy)


def relu(x, inplace=False):
    """max(x, 0); inplace=True overwrites x, which must then be read by nothing else (a
    leaf that requires a gradient is refused: its value would be lost)."""
    x = float_tensor("relu", "x", x, bf16=True)
    if inplace and x.requires_grad and x.creator is None:
        raise ValueError(f"relu: inplace=True on a leaf tensor {x.shape} that requires a "
                         f"gradient would overwrite it; use inplace=False")
    return ReLU(inplace)(x)


_first_image = 0  # index in the global batch of this process's first image


@contextlib.contextmanager
def images_from(first):
    """Inside the block, dropout() takes x's image 0 for image `first` of the global batch."""
    global _first_image
    previous, _first_image = _first_image, int(first)
    try:
        yield
    finally:
        _first_image = previous


def image_seed(seed, index):
    """seed_n of the docstring: SplitMix64 output `index` of the generator at `seed`,
    less its lowest bit (kept below 2^63 like the seeds dropout() draws)."""
    if not isinstance(seed, int):  # a 1-element device slot (a captured step): on the device
        xp = backend.get_array_module(seed)
        u64 = xp.uint64
        z = seed.view(u64) + u64((index + 1) * GOLDEN_GAMMA & _U64)
        z = (z ^ (z >> u64(30))) * u64(MIX1)
        z = (z ^ (z >> u64(27))) * u64(MIX2)
        return ((z ^ (z >> u64(31))) >> u64(1)).view(xp.int64)
    z = (seed + (index + 1) * GOLDEN_GAMMA) & _U64
    z = ((z ^ (z >> 30)) * MIX1) & _U64
    z = ((z ^ (z >> 27)) * MIX2) & _U64
    return (z ^ (z >> 31)) >> 1


_U64 = 2**64 - 1


class Dropout(Function):
    """first_image None: one mask over x's flat index; an int: a mask per image (axis 0),
    image n seeded by image_seed(seed, first_image + n)."""

    def __init__(self, p, seed, first_image=None):
        self.seed, self.threshold = seed, math.ceil(p * 2**53)  # p 2^53 is exact
        self.scale = 1.0 / (1.0 - p)
        self.first_image = first_image

    def forward(self, x):
        return self._apply_mask(x)

    def backward(self, gy):
        return self._apply_mask(gy)

    def _apply_mask(self, array):
        kernels = backend.kernels_for(array)
        if self.first_image is None or array.ndim == 0 or len(array) == 0:
            return kernels.dropout(array, self.seed, self.threshold, self.scale)
        images = [kernels.dropout(array[n], image_seed(self.seed, self.first_image + n),
                                  self.threshold, self.scale) for n in range(len(array))]
        return images[0][None] if len(images) == 1 else backend.get_array_module(array).stack(images)


def dropout(x, p=0.5, training=True):
    x = float_tensor("dropout", "x", x, bf16=True)
    if not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p!r}")
    if not training or p == 0.0:
        return x
    # the seed: an int, or in a captured step the device slot graph.py refills per replay
    return Dropout(float(p), seed=graph.draw_seed(), first_image=_first_image)(x)
