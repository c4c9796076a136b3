"""Weight fillers: Caffe's, by name, and the bilinear kernel FCN upsamples with.

For a weight of shape (n_out, ...) the fan-in is the product of the other dimensions
(C_in/groups * kh * kw for a convolution, K for a Linear (M, K)), as Caffe counts it.

    "msra"      N(0, 2 / fan_in)              Caffe MSRAFiller (He et al.): keeps a ReLU
                                              stack's activations at a steady scale, so a
                                              VGG-deep net trains from scratch. The default.
    "xavier"    U(-sqrt(3 / fan_in), +...)    Caffe XavierFiller (variance 1 / fan_in)
    "gaussian"  N(0, 0.01^2)                  Caffe's gaussian filler as the original VGG
                                              and AlexNet prototxts used it
    "zero"      0                             score layers; nets whose weights get loaded
                                              (numpy.zeros costs no memory until written)

Biases always start at 0. Random draws come from minifcn's seeded generator
(`minifcn.seed`), so a net built after `seed(n)` is reproducible.

bilinear_kernel is surgery.interp of the reference code: for kernel size k,

    f = (k + 1) // 2,   c = f - 1 if k is odd else f - 0.5,
    filter[i, j] = (1 - |i - c| / f) * (1 - |j - c| / f)

placed on the class diagonal W[i, i] (channel i upsamples channel i only). A transposed
convolution with this kernel and stride f interpolates bilinearly.
"""
import math

import numpy

from .. import backend

FILLERS = ("msra", "xavier", "gaussian", "zero")


def float_dtype(dtype):
    dtype = numpy.dtype(dtype)
    if dtype not in (numpy.float32, numpy.float64):
        raise TypeError(f"parameters are float32 or float64, not {dtype}")
    return dtype


def fill(init, shape, dtype=numpy.float32):
    """A host array of `shape` filled by the named filler (see the module docstring)."""
    dtype = float_dtype(dtype)
    if init == "zero":
        return numpy.zeros(shape, dtype)
    fan_in = math.prod(shape[1:])
    rng = backend.rng()
    if init == "msra":
        weight = rng.standard_normal(shape, dtype=dtype)
        weight *= math.sqrt(2.0 / fan_in)
    elif init == "gaussian":
        weight = rng.standard_normal(shape, dtype=dtype)
        weight *= 0.01
    elif init == "xavier":
        bound = math.sqrt(3.0 / fan_in)
        weight = rng.random(shape, dtype=dtype)  # U[0, 1) -> U[-bound, bound)
        weight *= 2 * bound
        weight -= bound
    else:
        raise ValueError(f"unknown init {init!r}: choose one of {', '.join(FILLERS)}")
    return weight


def bilinear_filter(size):
    """The (size, size) bilinear interpolation kernel (surgery.upsample_filt)."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - numpy.abs(numpy.arange(size) - center) / factor
    return numpy.outer(ramp, ramp)


def bilinear_kernel(n_in, n_out, size, dtype=numpy.float32):
    """Deconvolution weight (n_in, n_out, size, size): the bilinear filter on W[i, i].

    n_out == n_in: channel i is upsampled into channel i, nothing crosses classes.
    n_out == 1: the per-channel weight of a grouped (groups = n_in) deconvolution.
    """
    if n_out != n_in and n_out != 1:
        raise ValueError(f"bilinear_kernel: input and output channels must be equal (or one "
                         f"output channel per group), got {n_in} and {n_out}")
    weight = numpy.zeros((n_in, n_out, size, size), float_dtype(dtype))
    channels = numpy.arange(n_in)
    weight[channels, channels if n_out == n_in else 0] = bilinear_filter(size)
    return weight
