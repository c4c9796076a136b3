// Inverted dropout with a counter-based mask (minifcn/functions/activation.py):
//
//     bits(i)   = SplitMix64(seed, i) >> 11              53 uniform random bits
//     keep(i)   = bits(i) >= threshold                    threshold = ceil(p 2^53)
//     y[i]      = keep(i) ? x[i] * scale : 0              scale = 1 / (1 - p)
//
// The mask is a function of (seed, i), never stored: backward is the same kernel on
// gy with the same seed (dropout is linear in x for a fixed mask). One pass reads x and
// writes y, where drawing uniforms, comparing, scaling and multiplying took four passes
// and a random generator's set-up, and kept a mask alive until backward. The NumPy
// reference computes the same bits, so CPU and GPU draw the same masks.
//
// x and y hold `size` elements, C-contiguous; i is the flat index.
//
// THREAD MAPPING
//   one thread per element, `size` in all; neighbouring threads take neighbouring
//   elements (contiguous loads and stores). Grid: 1-D, any size (grid-stride loops).

#include "common.cuh"

// Output number i + 1 of Steele, Lea and Flood's SplitMix64 generator started at
// `seed`: a Weyl sequence through a 64-bit mixing function.
__device__ __forceinline__ unsigned long long splitmix64(unsigned long long seed, index_t i)
{
    unsigned long long z = seed + (unsigned long long)(i + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

__device__ __forceinline__ scalar_t dropped(scalar_t x, unsigned long long seed, index_t i,
                                            long long threshold, scalar_t scale)
{
    const bool keep = (splitmix64(seed, i) >> 11) >= (unsigned long long)threshold;
    return keep ? x * scale : (scalar_t)0;
}

extern "C" __global__ void dropout(
    const scalar_t* __restrict__ x, index_t size, long long seed, long long threshold,
    scalar_t scale, scalar_t* __restrict__ y)
{
    GRID_STRIDE_LOOP(i, size) {
        y[i] = dropped(x[i], (unsigned long long)seed, i, threshold, scale);
    }
}

// The same, with the seed read from device memory (seed[0]): a training step captured
// as a CUDA graph (minifcn/graph.py) bakes every by-value argument into the graph, so
// each replay's fresh seed is written there instead. One extra 8-byte load per thread.
extern "C" __global__ void dropout_seed_on_device(
    const scalar_t* __restrict__ x, index_t size, const long long* __restrict__ seed,
    long long threshold, scalar_t scale, scalar_t* __restrict__ y)
{
    const unsigned long long seed_value = (unsigned long long)seed[0];
    GRID_STRIDE_LOOP(i, size) {
        y[i] = dropped(x[i], seed_value, i, threshold, scale);
    }
}
