"""Argument checks shared by every op: each error names the op and the shapes.

Nothing broadcasts silently and nothing is converted behind the caller's back: an op
gets Tensors (or arrays, wrapped here) of a floating dtype and the rank it expects,
and sizes that are positive ints or (h, w) pairs.
"""
import numbers

import numpy

from ..autograd import Tensor


def tensor_arg(op, name, value):
    """`value` as a Tensor: a Tensor as is, an ndarray wrapped (no gradient)."""
    if isinstance(value, Tensor):
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return Tensor(value)
    raise TypeError(f"{op}: {name} must be a minifcn Tensor or an array, "
                    f"not {type(value).__name__}")


def float_tensor(op, name, value, ndim=None):
    """A floating-point Tensor of rank `ndim` (any rank if None)."""
    tensor = tensor_arg(op, name, value)
    if tensor.dtype not in (numpy.float32, numpy.float64):
        raise TypeError(f"{op}: {name} must be float32 or float64, got {tensor.dtype} "
                        f"with shape {tensor.shape}")
    if ndim is not None and tensor.ndim != ndim:
        layout = " (N, C, H, W)" if ndim == 4 and name != "weight" else ""
        raise ValueError(f"{op}: {name} must have {ndim} dimensions{layout}, "
                         f"got shape {tensor.shape}")
    return tensor


def same_dtype(op, **tensors):
    dtypes = {name: t.dtype for name, t in tensors.items() if t is not None}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{op}: inputs must share one dtype, got {listed}")


def same_device(op, **tensors):
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"{op}: inputs must be on one device, got {listed}")


def pair(op, name, value, minimum=1):
    """An int or an (h, w) pair as a tuple of two ints, each >= minimum."""
    values = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        values = tuple(values)
    except TypeError:
        values = None
    if (values is None or len(values) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(values[0]), int(values[1])
