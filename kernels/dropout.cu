// Inverted dropout with a counter-based mask (minifcn/functions/activation.py):
//
//     bits(i)   = SplitMix64(seed, i) >> 11              53 uniform random bits
//     keep(i)   = bits(i) >= threshold                    threshold = ceil(p 2^53)
//     y[i]      = keep(i) ? x[i] * scale : 0              scale = 1 / (1 - p)
//
// x * scale is computed in acc_t and rounded once (common.cuh): in bf16 the float32
// product of the decoded value, rounded to bf16. The mask depends on (seed, i) alone,
// so every build, bf16 included, drops the same elements.
//
// The mask is a function of (seed, i), never stored: backward is the same kernel on
// gy with the same seed (dropout is linear in x for a fixed mask). One pass reads x and
// writes y, where drawing uniforms, comparing, scaling and multiplying took four passes
// and a random generator's set-up, and kept a mask alive until backward. The NumPy
// reference computes the same bits, so CPU and GPU draw the same masks, bit for bit.
//
// x and y hold `size` elements, C-contiguous; i is the flat index.
//
// THREAD MAPPING
//   one thread per 16-byte vector (4 floats, 2 doubles or 8 bf16) of x and y, grid-stride over
//   size / width vectors: one vector load, `width` hashes, one vector store. Neighbouring
//   threads take neighbouring vectors (a warp moves 512 contiguous bytes each way). The
//   last size % width elements go to the grid's first threads, one each (grid-stride,
//   so any grid covers them). When x or y is not 16-byte aligned (a view into a larger
//   buffer) every thread takes single elements instead, grid-stride. Grid: 1-D, any
//   size. dropout_seed_on_device (CUDA graphs) is the same with the seed in memory.
//
// WHAT BOUNDS ITS SPEED
//   Bytes: read x, write y: 2 * size * sizeof(scalar_t) (8 bytes an element in float32,
//   4 in bf16, where the hashes' integer work per byte doubles and may bound it).
//   The hash costs two 64-bit multiplies per element (the Weyl step is one add, the
//   index advancing by one inside a vector): about 20 integer instructions an element,
//   within an H100/H200's integer throughput at its memory bandwidth in float32 but
//   not by much, so the kernel is memory-bound with little to spare. Prediction
//   (benchmarks/gpu_cases.py, dropout fc6 4096 x 16 x 16: 8 MB moved): launch-bound at
//   batch 1; at batch 8 (67 MB) 70-80% of copy bandwidth, where one 4-byte element a
//   thread kept only 4 bytes in flight per thread.

#include "common.cuh"

#define GOLDEN_GAMMA 0x9E3779B97F4A7C15ULL

// Output number i + 1 of Steele, Lea and Flood's SplitMix64 generator started at
// `seed`, given its Weyl state z = seed + (i + 1) * GOLDEN_GAMMA: a 64-bit mix of z.
__device__ __forceinline__ unsigned long long splitmix64_mix(unsigned long long z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

__device__ __forceinline__ unsigned long long weyl_state(long long seed, index_t i)
{
    return (unsigned long long)seed + ((unsigned long long)i + 1ULL) * GOLDEN_GAMMA;
}

// bits >> 11 >= threshold  <=>  bits >= threshold << 11 (threshold < 2^53: p < 1)
__device__ __forceinline__ scalar_t dropped_or_scaled(scalar_t value, unsigned long long state,
                                                      unsigned long long keep_from, acc_t scale)
{
    return splitmix64_mix(state) >= keep_from ? from_acc(to_acc(value) * scale) : (scalar_t)0;
}

// The kernel's body, for either source of the seed.
__device__ __forceinline__ void dropout_body(
    const scalar_t* __restrict__ x, index_t size, long long seed, long long threshold,
    acc_t scale, scalar_t* __restrict__ y)
{
    const unsigned long long keep_from = (unsigned long long)threshold << 11;
    const index_t thread = (index_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (!(aligned_16(x) && aligned_16(y))) {
        GRID_STRIDE_LOOP(i, size) y[i] = dropped_or_scaled(x[i], weyl_state(seed, i), keep_from, scale);
        return;
    }
    const index_t vectors = size / SCALAR_VECTOR_WIDTH;
    const scalar_vector* x_vectors = reinterpret_cast<const scalar_vector*>(x);
    scalar_vector* y_vectors = reinterpret_cast<scalar_vector*>(y);
    GRID_STRIDE_LOOP(v, vectors) {
        scalar_vector values = x_vectors[v];
        unsigned long long state = weyl_state(seed, v * SCALAR_VECTOR_WIDTH);
PRAGMA_UNROLL()
        for (int k = 0; k < SCALAR_VECTOR_WIDTH; ++k, state += GOLDEN_GAMMA) {
            values.v[k] = dropped_or_scaled(values.v[k], state, keep_from, scale);
        }
        y_vectors[v] = values;
    }
    // the tail, fewer than `width` elements
    for (index_t i = vectors * SCALAR_VECTOR_WIDTH + thread; i < size;
         i += (index_t)gridDim.x * blockDim.x) {
        y[i] = dropped_or_scaled(x[i], weyl_state(seed, i), keep_from, scale);
    }
}

extern "C" __global__ void dropout(
    const scalar_t* __restrict__ x, index_t size, long long seed, long long threshold,
    acc_t scale, scalar_t* __restrict__ y)
{
    dropout_body(x, size, seed, threshold, scale, y);
}

// The same, with the seed read from device memory (seed[0]): a training step captured
// as a CUDA graph (minifcn/graph.py) bakes every by-value argument into the graph, so
// each replay's fresh seed is written there instead. One extra 8-byte load per thread.
extern "C" __global__ void dropout_seed_on_device(
    const scalar_t* __restrict__ x, index_t size, const long long* __restrict__ seed,
    long long threshold, acc_t scale, scalar_t* __restrict__ y)
{
    dropout_body(x, size, seed[0], threshold, scale, y);
}
