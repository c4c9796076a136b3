"""Every differentiable op, one module per family (imported as `F`).

    conv.py        conv2d, conv_transpose2d, linear      (im2col + GEMM, winograd.py)
    pooling.py     max_pool2d, avg_pool2d
    activation.py  relu, dropout
    array.py       add, scale, reshape, crop, concat, cast
    norm.py        local_response_norm
    loss.py        softmax_cross_entropy

Each module opens with the math of its forward and backward passes.
"""
from .activation import dropout, relu
from .array import add, cast, concat, crop, reshape, scale, sum_all
from .conv import conv2d, conv_transpose2d, linear
from .loss import softmax_cross_entropy
from .norm import local_response_norm
from .pooling import avg_pool2d, max_pool2d

__all__ = ["add", "avg_pool2d", "cast", "concat", "conv2d", "conv_transpose2d", "crop", "dropout",
           "linear", "local_response_norm", "max_pool2d", "relu", "reshape", "scale",
           "softmax_cross_entropy", "sum_all"]
