"""Ops that move or combine values without learning anything.

    add        y = a + b                     ga = gy, gb = gy (same shapes; no broadcasting)
    scale      y = c x                       gx = c gy
    reshape    y = x viewed as `shape`       gx = gy viewed as x's shape
    sum_all    y = sum x                     gx = gy everywhere
    crop       y = x[:, :, oy:oy+h, ox:ox+w] gx = zeros with gy placed back at the offset
    concat     y = [x_1, ..., x_k] on axis   gx_i = the slice of gy that x_i filled
    cast       y = x stored as another dtype  gx = gy cast back to x's dtype

bf16 tensors (uint16 storage, bfloat16.py) go through add, scale, crop and concat on the
GPU: add is a kernel (the bits are not integers), scale computes in float32 and stores
bf16, crop and concat move bits. sum_all refuses them (cast to float32 first).
"""
import numbers

import numpy

from ..autograd import Function, Tensor
from .. import backend, bfloat16, precision
from .validate import float_tensor, pair, same_device, same_dtype, tensor_arg


class Add(Function):
    def forward(self, a, b):
        if bfloat16.is_bfloat16(a):
            return backend.kernels_for(a).add(a, b)
        return a + b

    def backward(self, gy):
        return gy, gy


def add(a, b):
    a, b = float_tensor("add", "a", a, bf16=True), float_tensor("add", "b", b, bf16=True)
    if a.shape != b.shape:
        raise ValueError(f"add: shapes must match (nothing broadcasts), got {a.shape} and {b.shape}")
    same_dtype("add", a=a, b=b)
    same_device("add", a=a, b=b)
    return Add()(a, b)


class Scale(Function):
    def __init__(self, factor):
        self.factor = factor

    def forward(self, x):
        return _scaled(x, self.factor)

    def backward(self, gy):
        return _scaled(gy, self.factor)


def _scaled(array, factor):
    """factor * array; a bf16 array is scaled in float32 and rounded back to bf16."""
    if bfloat16.is_bfloat16(array):
        scaled = precision.astype(array, numpy.float32) * numpy.float32(factor)
        return precision.astype(scaled, array.dtype)
    return array * array.dtype.type(factor)


def scale(x, factor):
    """x times a Python scalar."""
    if not isinstance(factor, numbers.Real) or isinstance(factor, bool):
        raise TypeError(f"scale: a Tensor is multiplied only by a Python scalar, got "
                        f"{type(factor).__name__}")
    return Scale(float(factor))(float_tensor("scale", "x", x, bf16=True))


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self.in_shape)


def reshape(x, shape):
    x = tensor_arg("reshape", "x", x)
    try:
        backend.get_array_module(x.data).empty(x.shape, dtype=bool).reshape(shape)
    except (ValueError, TypeError):
        raise ValueError(f"reshape: cannot view shape {x.shape} as {tuple(shape)}") from None
    return Reshape(tuple(shape))(x)


class SumAll(Function):
    def forward(self, x):
        self.in_shape = x.shape
        return x.sum().reshape(())

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        return xp.broadcast_to(gy, self.in_shape)


def sum_all(x):
    return SumAll()(float_tensor("sum", "x", x))


class Crop(Function):
    def __init__(self, offset, size):
        self.offset, self.size = offset, size

    def forward(self, x):
        self.in_shape = x.shape
        (oy, ox), (h, w) = self.offset, self.size
        return backend.kernels_for(x).crop_forward(x, oy, ox, h, w)

    def backward(self, gy):
        (oy, ox) = self.offset
        return backend.kernels_for(gy).crop_backward(gy, *self.in_shape[2:], oy, ox)


def crop(x, reference, offset):
    """Caffe Crop on axes 2, 3: x[:, :, oy:oy+H_ref, ox:ox+W_ref]."""
    x = float_tensor("crop", "x", x, ndim=4, bf16=True)
    if isinstance(reference, Tensor):
        if reference.ndim != 4:
            raise ValueError(f"crop: reference must be (N, C, H, W) or an (H, W) pair, "
                             f"got shape {reference.shape}")
        size = tuple(reference.shape[2:])
    else:
        size = pair("crop", "reference size", reference)
    oy, ox = pair("crop", "offset", offset, minimum=0)
    if oy + size[0] > x.shape[2] or ox + size[1] > x.shape[3]:
        raise ValueError(f"crop: a {size[0]}x{size[1]} window at offset ({oy}, {ox}) does not "
                         f"fit in x {x.shape}")
    return Crop((oy, ox), size)(x)


class Concat(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        self.sections = [x.shape[self.axis] for x in xs]
        return backend.get_array_module(xs[0]).concatenate(xs, axis=self.axis)

    def backward(self, gy):
        grads, start = [], 0
        for width in self.sections:
            index = [slice(None)] * gy.ndim
            index[self.axis] = slice(start, start + width)
            grads.append(gy[tuple(index)])
            start += width
        return tuple(grads)


def concat(xs, axis=1):
    xs = [tensor_arg("concat", f"xs[{i}]", x) for i, x in enumerate(xs)]
    if not xs:
        raise ValueError("concat: needs at least one tensor")
    ndim = xs[0].ndim
    if not -ndim <= axis < ndim:
        raise ValueError(f"concat: axis {axis} out of range for {ndim}-d tensors")
    axis %= ndim
    shapes = [x.shape for x in xs]
    for x in xs:
        if x.ndim != ndim or x.shape[:axis] + x.shape[axis + 1:] != xs[0].shape[:axis] + xs[0].shape[axis + 1:]:
            raise ValueError(f"concat: shapes must match except on axis {axis}, got {shapes}")
    same_dtype("concat", **{f"xs[{i}]": x for i, x in enumerate(xs)})
    same_device("concat", **{f"xs[{i}]": x for i, x in enumerate(xs)})
    return Concat(axis)(*xs)


class Cast(Function):
    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.in_dtype = x.dtype
        return precision.astype(x, self.dtype)

    def backward(self, gy):
        return precision.astype(gy, self.in_dtype)


CAST_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64), bfloat16.DTYPE)


def cast(x, dtype):
    """x stored as `dtype`: numpy.float32, numpy.float64 or bfloat16.DTYPE (bf16, see
    bfloat16.py), rounded to nearest even; the gradient is cast back to x's dtype. A
    cast to x's own dtype returns x. To or from bf16 it runs on either device."""
    x = tensor_arg("cast", "x", x)
    dtype = numpy.dtype(dtype)
    if x.dtype not in CAST_DTYPES or dtype not in CAST_DTYPES:
        raise TypeError(f"cast: converts between float32, float64 and bf16 "
                        f"({bfloat16.DTYPE}), not {x.dtype} {x.shape} to {dtype}")
    return x if x.dtype == dtype else Cast(dtype)(x)
