// The elementwise passes of a training step, each fused into one kernel (the math and
// the NumPy references: minifcn/reference/elementwise.py):
//
//     relu_backward     gx[i] = y[i] > 0 ? gy[i] : 0
//                       from ReLU's saved OUTPUT y (y > 0 exactly where x > 0), so no
//                       bool mask is made in forward and no multiply pass reads it back
//     accumulate        total_inout[i] += g[i]
//                       a gradient summed into the buffer autograd owns (a parameter's
//                       slice of the optimizer's gradient arena), with no temporary
//     bias_grad_partial partial[c * splits + s] = sum of gy over part s of channel c
//     bias_grad_finish  gb[c] = sum over s of partial[c * splits + s], s in order
//
// gy is (N, C, H, W) C-contiguous; channel c's elements are the N planes
// gy[n, c, :, :], `pixels` = H * W each. Seen as one sequence j = n * pixels + p of
// N * pixels elements, channel c is cut into `splits` equal ranges (minifcn/cuda.py
// picks splits from the sizes, never from the grid: the sums, and so the gradients,
// are the same on every run and every GPU). Deterministic, no atomics.
//
// THREAD MAPPING
//   relu_backward, accumulate: one thread per element, neighbouring threads on
//     neighbouring elements (coalesced loads and stores). Grid: 1-D, any size
//     (grid-stride loops).
//   bias_grad_partial: one BLOCK per (channel, split) unit, units grid-strided over
//     blockIdx.x (any grid in x works); its threads stride through the unit's range,
//     thread t reading elements t, t + blockDim.x, ... (coalesced within each plane),
//     then add their sums in a fixed tree in shared memory. blockDim.x must be a power
//     of two <= BIAS_GRAD_THREADS.
//   bias_grad_finish: one thread per channel. Grid: 1-D, any size.
//
// WHAT BOUNDS ITS SPEED, each kernel's: memory. Bytes moved per element (s = sizeof(scalar_t)):
//   relu_backward  3 s   (read y, gy; write gx) where CuPy's greater + multiply moved
//                        s + 1 (read x, write mask) in forward and 1 + 3 s in backward
//   accumulate     3 s   (read g, read and write total) where `total + g` moved 3 s and
//                        allocated a new buffer
//   bias_grad      s N C H W once + 2 s C splits, where cupy sum over (0, 2, 3) moved
//                  the same but with a transposing reduction; splits is chosen so that
//                  C * splits blocks fill the GPU (benchmarks/gpu_kernels.py).
// Predicted: all three near the copy bandwidth at batch 8; bias_grad at batch 1 limited
// by C * splits >= 1024 blocks, which the host's choice of splits guarantees.

#include "common.cuh"

#define BIAS_GRAD_THREADS 256

extern "C" __global__ void relu_backward(
    const scalar_t* __restrict__ y, const scalar_t* __restrict__ gy, index_t size,
    scalar_t* __restrict__ gx)
{
    GRID_STRIDE_LOOP(i, size) {
        gx[i] = y[i] > (scalar_t)0 ? gy[i] : (scalar_t)0;
    }
}

extern "C" __global__ void accumulate(
    const scalar_t* __restrict__ g, index_t size, scalar_t* __restrict__ total_inout)
{
    GRID_STRIDE_LOOP(i, size) {
        total_inout[i] += g[i];
    }
}

extern "C" __global__ void bias_grad_partial(
    const scalar_t* __restrict__ gy, index_t images, index_t channels, index_t pixels,
    index_t splits, scalar_t* __restrict__ partial)
{
    __shared__ scalar_t sums[BIAS_GRAD_THREADS];
    const index_t count = images * pixels;           // elements of one channel
    const index_t per_split = (count + splits - 1) / splits;
    const index_t threads = blockDim.x;
    // A thread's step of `threads` elements, as whole planes and a remainder, so the
    // walk needs no division per element.
    const index_t step_planes = threads / pixels, step_pixels = threads % pixels;
    for (index_t unit = blockIdx.x; unit < channels * splits; unit += gridDim.x) {
        const index_t c = unit / splits, s = unit % splits;
        const index_t first = s * per_split;
        const index_t last = min_index(first + per_split, count);
        scalar_t sum = 0;
        index_t j = first + threadIdx.x;
        index_t n = j / pixels, p = j % pixels;
        for (; j < last; j += threads) {
            sum += gy[(n * channels + c) * pixels + p];
            n += step_planes;
            p += step_pixels;
            if (p >= pixels) {
                p -= pixels;
                ++n;
            }
        }
        sums[threadIdx.x] = sum;
        __syncthreads();
        for (unsigned int half = blockDim.x / 2; half > 0; half /= 2) {
            if (threadIdx.x < half) sums[threadIdx.x] += sums[threadIdx.x + half];
            __syncthreads();
        }
        if (threadIdx.x == 0) partial[unit] = sums[0];
        __syncthreads();  // sums[0] read before the next unit overwrites it
    }
}

extern "C" __global__ void bias_grad_finish(
    const scalar_t* __restrict__ partial, index_t channels, index_t splits,
    scalar_t* __restrict__ gb)
{
    GRID_STRIDE_LOOP(c, channels) {
        scalar_t sum = 0;
        for (index_t s = 0; s < splits; ++s) sum += partial[c * splits + s];
        gb[c] = sum;
    }
}
