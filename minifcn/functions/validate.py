"""Argument checks shared by every op: each error names the op and the shapes.

Nothing broadcasts silently and nothing is converted behind the caller's back: an op
gets Tensors (or arrays, wrapped here) of a floating dtype and the rank it expects,
and sizes that are positive ints or (h, w) pairs. bf16 tensors (uint16 storage,
bfloat16.py) are taken by the ops that say so (`bf16=True`), on the GPU only; any
other op refuses them by name rather than read their bits as integers.
"""
import numbers

import numpy

from ..autograd import Tensor
from ..bfloat16 import is_bfloat16


def tensor_arg(op, name, value):
    """`value` as a Tensor: a Tensor as is, an ndarray wrapped (no gradient)."""
    if isinstance(value, Tensor):
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return Tensor(value)
    raise TypeError(f"{op}: {name} must be a minifcn Tensor or an array, "
                    f"not {type(value).__name__}")


def float_tensor(op, name, value, ndim=None, bf16=False):
    """A floating-point Tensor of rank `ndim` (any rank if None): float32, float64, or
    with `bf16` (an op that handles bf16 storage) a bf16 tensor on the GPU."""
    tensor = tensor_arg(op, name, value)
    if is_bfloat16(tensor.data):
        if not bf16:
            raise TypeError(f"{op}: {name} is bf16 (uint16 storage) with shape {tensor.shape}, "
                            f"which {op} does not take: cast it to float32 first (F.cast)")
        if tensor.device != "cuda":
            raise TypeError(f"{op}: {name} is bf16 with shape {tensor.shape} on the CPU, which "
                            f"has no bf16 kernels: bf16 runs on the GPU only")
    elif tensor.dtype not in (numpy.float32, numpy.float64):
        also = " (or bf16 on the GPU)" if bf16 else ""
        raise TypeError(f"{op}: {name} must be float32 or float64{also}, got {tensor.dtype} "
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
