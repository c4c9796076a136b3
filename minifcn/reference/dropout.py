"""Dropout's mask in NumPy: the reference kernel (the math: functions/activation.py).
The numba and CUDA kernels (cpu/dropout.py, kernels/dropout.cu) compute the same bits
from the same constants, so a seed gives the same masks on the CPU and the GPU.
"""
from ..backend import get_array_module


# SplitMix64 (Steele, Lea and Flood, 2014): output i + 1 of the generator started at seed.
GOLDEN_GAMMA, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def splitmix64(xp, seed, size):
    """The SplitMix64 outputs for indices 0 .. size-1, uint64 (wrapping arithmetic)."""
    u64 = xp.uint64
    z = (xp.arange(1, size + 1, dtype=u64) * u64(GOLDEN_GAMMA)) + u64(seed)
    z = (z ^ (z >> u64(30))) * u64(MIX1)
    z = (z ^ (z >> u64(27))) * u64(MIX2)
    return z ^ (z >> u64(31))


def dropout_numpy(x, seed, threshold, scale):
    """x * m * scale with m from (seed, flat index), as kernels/dropout.cu computes it."""
    xp = get_array_module(x)
    keep = (splitmix64(xp, seed, x.size) >> xp.uint64(11)) >= xp.uint64(threshold)
    return xp.where(keep.reshape(x.shape), x * x.dtype.type(scale), x.dtype.type(0))
