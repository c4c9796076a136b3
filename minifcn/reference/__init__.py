"""The NumPy kernel set: the pure-array reference of every kernel in kernel_set.py.

They are what to read to learn what a kernel computes, the oracle every numba and CUDA
kernel is tested against, and the CPU kernels when numba is off
(MINIFCN_CPU_KERNELS=numpy). They import only numpy and backend.get_array_module,
never the autograd, so the numba and CUDA sets can import them. One module per family:

    im2col.py    im2col, col2im and their row-band versions (conv_output_size)
    implicit_gemm.py  a whole convolution in one call (the implicit-GEMM kernel's contract)
    winograd.py  F(2x2, 3x3)'s input, output and gradient transforms
    pooling.py   max and average pooling, forward and backward
    loss.py      softmax cross-entropy, forward and backward
    crop.py      Caffe's Crop, forward and backward
    norm.py      local response normalization, forward and backward
    dropout.py   dropout's hashed mask (SplitMix64)
    elementwise.py  ReLU, the bias and its gradient, sums, in-place accumulation, the
                 float32 <-> bf16 cast
    solver.py    the SGD and Adam steps over every parameter at once (Segments)
"""
from ..kernel_set import KernelSet
from .crop import crop_backward_numpy, crop_forward_numpy
from .dropout import dropout_numpy
from .im2col import col2im_numpy, col2im_tile_numpy, im2col_numpy, im2col_tile_numpy
from .implicit_gemm import conv_implicit_gemm_numpy
from .loss import softmax_cross_entropy_backward_numpy, softmax_cross_entropy_forward_numpy
from .norm import lrn_backward_numpy, lrn_forward_numpy
from .pooling import (avg_pool_backward_numpy, avg_pool_forward_numpy, max_pool_backward_numpy,
                      max_pool_forward_numpy)
from .elementwise import (accumulate_numpy, add_bias_numpy, add_numpy, bias_grad_numpy,
                          cast_numpy, relu_backward_numpy, relu_forward_numpy)
from .solver import adam_step_numpy, sgd_step_numpy
from .winograd import winograd_gy_numpy, winograd_input_numpy, winograd_output_numpy


class NumpyKernels(KernelSet):
    name = "numpy"
    im2col, col2im = im2col_numpy, col2im_numpy
    im2col_tile, col2im_tile = im2col_tile_numpy, col2im_tile_numpy
    conv_implicit_gemm = conv_implicit_gemm_numpy
    winograd_input, winograd_output, winograd_gy = (winograd_input_numpy, winograd_output_numpy,
                                                    winograd_gy_numpy)
    max_pool_forward, max_pool_backward = max_pool_forward_numpy, max_pool_backward_numpy
    avg_pool_forward, avg_pool_backward = avg_pool_forward_numpy, avg_pool_backward_numpy
    softmax_cross_entropy_forward = softmax_cross_entropy_forward_numpy
    softmax_cross_entropy_backward = softmax_cross_entropy_backward_numpy
    crop_forward, crop_backward = crop_forward_numpy, crop_backward_numpy
    lrn_forward, lrn_backward = lrn_forward_numpy, lrn_backward_numpy
    dropout = dropout_numpy
    relu_backward, bias_grad, accumulate = relu_backward_numpy, bias_grad_numpy, accumulate_numpy
    relu_forward, add, add_bias, cast = relu_forward_numpy, add_numpy, add_bias_numpy, cast_numpy
    sgd_step, adam_step = sgd_step_numpy, adam_step_numpy


KERNELS = NumpyKernels()
