"""A convolution in one call, the contract of kernels/implicit_gemm.cu (the implicit
GEMM: im2col's indexing inside a tiled GEMM, so the columns never reach memory).

    y[n, m] = W_mat @ im2col(x[n])        W_mat = weight (C_out, C_in*kh*kw), groups = 1

The reference builds each image's columns (im2col.py) and multiplies: what the kernel
computes, with the columns in memory.
"""
from ..backend import get_array_module
from .im2col import im2col_numpy


def conv_implicit_gemm_numpy(x, weight, sy, sx, ph, pw, dy, dx, out_h, out_w):
    """x (N, C_in, H, W), weight (C_out, C_in, kh, kw) -> y (N, C_out, out_h, out_w)."""
    xp = get_array_module(x)
    c_out, _, kh, kw = weight.shape
    w_mat = weight.reshape(c_out, -1)
    y = xp.empty((x.shape[0], c_out, out_h, out_w), dtype=x.dtype)
    for n in range(x.shape[0]):
        col = im2col_numpy(x[n], kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w)
        y[n] = (w_mat @ col.reshape(w_mat.shape[1], -1)).reshape(c_out, out_h, out_w)
    return y
