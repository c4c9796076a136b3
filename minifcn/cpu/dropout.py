"""numba dropout (contract: reference/dropout.py, dropout_numpy).

    y[i] = x[i] * scale   where SplitMix64(seed, i) >> 11 >= threshold,   else 0

The NumPy version builds the 64-bit hashes in several passes over uint64 temporaries;
this one hashes and multiplies in one pass over memory, which is why it is the faster
at FCN-32s's fc6 output (`minifcn bench cpu_ops`, the dropout row; the run that chose
it: benchmarks/results/dropout/).

Loop mapping: prange over the flat index; each element is independent. Every integer
operation is on uint64, so it wraps as in C (numba would turn a uint64 mixed with a
signed int into a float).
"""
import numpy
from numba import njit, prange

from ..reference.dropout import GOLDEN_GAMMA, MIX1, MIX2

_GAMMA, _MIX1, _MIX2 = numpy.uint64(GOLDEN_GAMMA), numpy.uint64(MIX1), numpy.uint64(MIX2)
_S11, _S27, _S30, _S31 = (numpy.uint64(bits) for bits in (11, 27, 30, 31))


@njit(parallel=True, cache=True)
def _dropout(x, seed, threshold, scale, y):
    for i in prange(x.size):
        z = seed + numpy.uint64(i + 1) * _GAMMA
        z = (z ^ (z >> _S30)) * _MIX1
        z = (z ^ (z >> _S27)) * _MIX2
        z = z ^ (z >> _S31)
        y[i] = x[i] * scale if (z >> _S11) >= threshold else 0


def dropout(x, seed, threshold, scale):
    x = numpy.ascontiguousarray(x)
    y = numpy.empty_like(x)
    _dropout(x.reshape(-1), numpy.uint64(seed), numpy.uint64(threshold), x.dtype.type(scale),
             y.reshape(-1))
    return y
