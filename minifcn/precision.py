"""Mixed precision: under bf16 the activations and the convolutions' GEMMs are bfloat16,
while the master weights, the loss and every reduction stay float32.

    fp32   float32 everywhere (the default)
    tf32   float32 storage; cuBLAS rounds the GEMMs' inputs to TF32 (10 mantissa bits)
           for the tensor cores and accumulates in float32 (cuda.allow_tf32)
    bf16   the activations and the convolutions' GEMMs in bfloat16 (`autocast`), with
           float32 accumulation; what stays float32 is listed below

What is bf16 under `autocast()`, on the GPU:
- every convolution and transposed convolution: a float32 input is cast to bf16 first
  (F.cast, differentiable: its gradient is cast back), the output is bf16, and the
  GEMMs read bf16 operands and accumulate in float32 (cuBLAS CUBLAS_COMPUTE_32F);
- so the activations between them: ReLU, pooling, dropout, crop, the skip additions,
  concat and LRN keep the dtype they are given, and once the first convolution has
  made a bf16 map the whole trunk's maps are bf16: half the memory and the traffic;
- the gradients of those maps, which autograd adds with kernels, never as integers.

What stays float32, and why:
- the master weights (the Parameters) and their gradients. A bf16 weight cannot take
  an update smaller than 2^-9 of itself (w + dw rounds back to w), and SGD's updates
  mostly are that small, so a bf16 weight would stop learning. A convolution casts its
  float32 weight to a bf16 copy at each forward (a kernel, outside autograd), and its
  weight-gradient GEMM writes float32 directly; a bias stays float32, is added to the
  bf16 output by a kernel, and its gradient is a float32 sum.
- the loss: the net's scores are cast to float32 where they leave the net (the
  outermost Module call, `call_module`), so the softmax, the loss, the metrics and the
  predictions are float32 code, unchanged. In bf16 log-sum-exp loses the small
  probabilities: a term below 2^-9 of the sum does not change it, and the log of a
  small probability, the loss's largest gradients, would be coarse.
- every reduction: the GEMMs and kernels accumulate in float32 registers, whatever
  the storage (bias gradients, pooling windows, LRN's sums).

How a bf16 array is held: CuPy has no bfloat16 dtype, so a bf16 array is a uint16 array
of the top 16 bits of the float32 values (bfloat16.py). An op that cannot handle one
refuses it with a TypeError naming the op (functions/validate.py), never treating it
as integers. float64 is never cast: the gradient checks stay float64.

The CPU has neither bf16 nor TF32: `check` refuses them there in one line.
"""
import contextlib

import numpy

from . import backend, bfloat16
from .errors import OptionError

PRECISIONS = ("fp32", "tf32", "bf16")

_autocast = False  # inside autocast()
_depth = 0         # Module calls under way (call_module): the outermost is the net


def check(precision, device=None):
    """`precision` if it is one of PRECISIONS and runs on `device` (not checked if None);
    else an OptionError saying what to do."""
    if precision not in PRECISIONS:
        raise OptionError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if device is not None and precision != "fp32" and device != "cuda":
        raise OptionError(f"precision {precision} needs the GPU (device cuda): the CPU computes "
                          f"in float32 only, so use precision fp32 (the default) there")
    return precision


@contextlib.contextmanager
def autocast(enabled=True):
    """Inside the block, convolutions on the GPU compute in bf16 and the net's output is
    float32 (see the module docstring). `enabled=False` leaves things as they are."""
    global _autocast
    previous, _autocast = _autocast, bool(enabled) or _autocast
    try:
        yield
    finally:
        _autocast = previous


def autocasting():
    """Whether an `autocast` block is active."""
    return _autocast


@contextlib.contextmanager
def use(precision, device):
    """Run a block at `precision` on `device`: tf32 allows TF32 (restored after), bf16 is
    `autocast`, fp32 changes nothing. OptionError where the device cannot (`check`)."""
    check(precision, device)
    if precision == "tf32":
        from . import cuda
        previous = cuda.allow_tf32(True)
        try:
            yield
        finally:
            cuda.allow_tf32(previous)
        return
    with autocast(precision == "bf16"):
        yield


def compute_input(op, x):
    """The Tensor x as the convolution `op` computes on it: under autocast, a float32 x
    cast to bf16 (F.cast); anything else as it is. A CPU x under autocast is a TypeError."""
    if not _autocast or x.dtype != numpy.float32:
        return x
    if x.device != "cuda":
        raise TypeError(f"{op}: autocast (bf16) runs on the GPU only, and x {x.shape} is on "
                        f"the CPU; compute in float32 there")
    from .functions import cast
    return cast(x, bfloat16.DTYPE)


def call_module(forward, inputs, options):
    """forward(*inputs, **options) for Module.__call__. Under autocast, the outermost call
    (the net, not its layers) casts the bf16 Tensors it returns to float32, so what
    consumes the net's scores (the loss, metrics, predict) sees float32 only."""
    global _depth
    if not _autocast:
        return forward(*inputs, **options)
    _depth += 1
    try:
        output = forward(*inputs, **options)
    finally:
        _depth -= 1
    return output if _depth else _to_float32(output)


def _to_float32(output):
    from .autograd import Tensor
    from .functions import cast
    if isinstance(output, Tensor):
        return cast(output, numpy.float32) if bfloat16.is_bfloat16(output.data) else output
    if isinstance(output, (tuple, list)):  # a multi-headed net's scores (heads.py)
        return type(output)(_to_float32(item) for item in output)
    return output


def astype(array, dtype):
    """`array` as `dtype` (itself when it is one already). To or from bf16 it is the
    kernel set's `cast` (float32 <-> bf16, rounded to nearest even), through float32 for
    float64; other dtypes by astype."""
    dtype = numpy.dtype(dtype)
    if array.dtype == dtype:
        return array
    if not (bfloat16.is_bfloat16(array) or dtype == bfloat16.DTYPE):
        return array.astype(dtype)
    kernels, float32 = backend.kernels_for(array), numpy.dtype(numpy.float32)
    if dtype == bfloat16.DTYPE:
        return kernels.cast(array if array.dtype == float32 else array.astype(float32), dtype)
    values = kernels.cast(array, float32)
    return values if dtype == float32 else values.astype(dtype)
