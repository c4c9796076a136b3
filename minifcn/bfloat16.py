"""bfloat16 storage: how a bf16 array is held, and its conversions to and from float32.

bfloat16 is float32 with the low 16 bits of the mantissa dropped: the same sign and
8-bit exponent (so the same range), 8 significant bits instead of 24 (a relative
rounding error of at most 2^-9). NumPy and CuPy have no bfloat16 dtype, so minifcn holds
a bf16 array as a uint16 array of those top 16 bits. No other floating-point data in
minifcn is ever uint16, so the dtype alone says that an array is bf16 (`is_bfloat16`).

    to float32     bits << 16                                     (exact)
    from float32   the top 16 bits, rounded to nearest, ties to even; a NaN stays a
                   (quiet) NaN of the same sign; overflow rounds to +-inf, as IEEE does

The CUDA kernels convert the same way, in registers (kernels/common.cuh); these are the
host-side versions: the references the kernels are checked against, and what tests use.
Both work on NumPy and CuPy arrays.
"""
import numpy

from . import backend

DTYPE = numpy.dtype(numpy.uint16)


def is_bfloat16(array):
    """Whether `array` holds bf16 values (a uint16 array, see the module docstring)."""
    return array.dtype == DTYPE


def to_float32(bits):
    """The float32 values of the bf16 array `bits` (exact)."""
    xp = backend.get_array_module(bits)
    if bits.dtype != DTYPE:
        raise TypeError(f"bfloat16.to_float32: expected a bf16 (uint16) array, got {bits.dtype}")
    return (bits.astype(xp.uint32) << 16).view(xp.float32)


def from_float32(values):
    """The bf16 array nearest to float32 `values` (ties to even, NaN kept)."""
    xp = backend.get_array_module(values)
    if values.dtype != numpy.float32:
        raise TypeError(f"bfloat16.from_float32: expected float32, got {values.dtype}")
    u = xp.ascontiguousarray(values).view(xp.uint32)
    rounded = (u + (0x7FFF + ((u >> 16) & 1))) >> 16
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return xp.where(nan, (u >> 16) | 0x0040, rounded).astype(xp.uint16)


def round_float32(values):
    """float32 `values` rounded to the nearest bf16 and back: what a bf16 store keeps."""
    return to_float32(from_float32(values))
