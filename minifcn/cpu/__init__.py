"""The numba kernel set: the CPU hot paths compiled, same contracts as the NumPy references.

`NumbaKernels` below states which kernel of the contract (kernel_set.py) each module
implements, and which it takes from the NumPy references on purpose (`fallbacks`);
backend.kernels_for(array) returns it for a NumPy array while numba is active. One
module per family, each opening with its math and how its loops map onto threads:

    im2col.py    im2col, col2im (whole images), im2col_tile, col2im_tile (bands of
                 output rows, for the blocked convolution in functions/conv.py)
    pooling.py   max_pool_forward, max_pool_backward, avg_pool_forward, avg_pool_backward
    loss.py      softmax_cross_entropy_forward, softmax_cross_entropy_backward
    solver.py    sgd_step, adam_step (every parameter's step in one pass over memory)
    elementwise.py  relu_backward, bias_grad, accumulate
    dropout.py   dropout (mask hashed and applied in one pass)
    winograd.py  winograd_input, winograd_output, winograd_gy (F(2x2, 3x3)'s transforms)

Every kernel is compiled for the dtypes it is first called with (float32, float64) and
cached on disk (cache=True), so only the first run on a machine pays for compiling.

Threads. The parallel loops (prange) run on numba's thread pool, the GEMMs between
them on BLAS's. Which pool numba uses, and how many threads each runs, matters a great
deal and is a setting of the whole process, so importing this package changes none of
it: runtime.configure_process() makes those settings, and says why.
"""
from .. import reference
from ..kernel_set import KernelSet
from .dropout import dropout
from .im2col import col2im, col2im_tile, im2col, im2col_tile
from .loss import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .pooling import avg_pool_backward, avg_pool_forward, max_pool_backward, max_pool_forward
from .elementwise import accumulate, bias_grad, relu_backward
from .solver import adam_step, sgd_step
from .winograd import winograd_gy, winograd_input, winograd_output


class NumbaKernels(KernelSet):
    name = "numba"
    # conv_implicit_gemm: the CPU convolution is the blocked im2col/Winograd path (conv.py),
    # which never asks for it; the reference serves the contract
    fallbacks = ("add", "add_bias", "cast", "conv_implicit_gemm", "crop_backward", "crop_forward",
                 "lrn_backward", "lrn_forward", "relu_forward")
    im2col, col2im, im2col_tile, col2im_tile = im2col, col2im, im2col_tile, col2im_tile
    winograd_input, winograd_output, winograd_gy = winograd_input, winograd_output, winograd_gy
    max_pool_forward, max_pool_backward = max_pool_forward, max_pool_backward
    avg_pool_forward, avg_pool_backward = avg_pool_forward, avg_pool_backward
    softmax_cross_entropy_forward = softmax_cross_entropy_forward
    softmax_cross_entropy_backward = softmax_cross_entropy_backward
    dropout = dropout
    relu_backward, bias_grad, accumulate = relu_backward, bias_grad, accumulate
    sgd_step, adam_step = sgd_step, adam_step
    # intended: a crop is one strided copy (ascontiguousarray), nothing to fuse
    conv_implicit_gemm = reference.conv_implicit_gemm_numpy
    crop_forward, crop_backward = reference.crop_forward_numpy, reference.crop_backward_numpy
    # intended: no numba LRN (yet); only FCN-AlexNet's first two layers use LRN
    lrn_forward, lrn_backward = reference.lrn_forward_numpy, reference.lrn_backward_numpy
    # intended: the bf16 kernels' contract (the CPU never holds bf16); NumPy's own
    # maximum, sum and bias broadcast serve float32 and float64
    relu_forward, add, add_bias = (reference.relu_forward_numpy, reference.add_numpy,
                                   reference.add_bias_numpy)
    cast = reference.cast_numpy


KERNELS = NumbaKernels()
