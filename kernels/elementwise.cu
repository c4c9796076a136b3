// The elementwise passes of a training step, each one kernel (the math and the NumPy
// references: minifcn/reference/elementwise.py). Arithmetic is in acc_t, rounded once
// as it is stored (common.cuh; in bf16: float arithmetic on the decoded values):
//
//     relu_forward      y[i] = x[i] if x[i] > 0 or x[i] is NaN, else 0   (numpy.maximum)
//     relu_backward     gx[i] = y[i] > 0 ? gy[i] : 0
//                       from ReLU's saved OUTPUT y (y > 0 exactly where x > 0), so no
//                       bool mask is made in forward and no multiply pass reads it back
//     add               y[i] = a[i] + b[i]
//     add_bias          y_inout[n, c, h, w] += bias[c]        bias in acc_t, in place
//     accumulate        total_inout[i] += g[i]
//                       a gradient summed into the buffer autograd owns (a parameter's
//                       slice of the optimizer's gradient arena), with no temporary
//     cast_to_acc       y[i] = x[i] as acc_t                  bf16 -> float32, exact
//     cast_from_acc     y[i] = x[i] rounded to scalar_t        float32 -> bf16, ties to even
//     bias_grad_partial partial[c * splits + s] = sum of gy over part s of channel c
//     bias_grad_finish  gb[c] = sum over s of partial[c * splits + s], s in order
//
// relu_forward and relu_backward copy stored values as they are. The bias, the bias
// gradient's partials and its result gb are acc_t: float32 for a bf16 gy, so the sums
// over N * H * W are float sums, rounded never.
//
// gy is (N, C, H, W) C-contiguous; channel c's elements are the N planes
// gy[n, c, :, :], `pixels` = H * W each. Seen as one sequence j = n * pixels + p of
// N * pixels elements, channel c is cut into `splits` equal ranges (minifcn/cuda.py
// picks splits from the sizes, never from the grid: the sums, and so the gradients,
// are the same on every run and every GPU). Deterministic, no atomics.
//
// THREAD MAPPING
//   relu_forward, add, cast_to_acc, cast_from_acc: ITEMS_PER_STEP (4) elements per
//     thread and step, a grid's width apart, all loaded before the first is stored: a
//     thread keeps 4 loads in flight, where one 2-byte bf16 load would leave too few
//     bytes in flight to cover DRAM's latency. Neighbouring threads on neighbouring
//     elements. Grid: 1-D, any size (grid-stride; cuda.py sizes it to size / 4).
//   relu_backward, accumulate: one thread per element, neighbouring threads on
//     neighbouring elements (coalesced loads and stores). Grid: 1-D, any size.
//   add_bias: grid z = plane (n, c), whose bias is loaded once; grid x = grid-stride
//     over the plane's pixels, one a thread: no division per element.
//   bias_grad_partial: one BLOCK per (channel, split) unit, units grid-strided over
//     blockIdx.x (any grid in x works); its threads stride through the unit's range,
//     thread t reading elements t, t + blockDim.x, ... (coalesced within each plane),
//     then add their sums in a fixed tree in shared memory. blockDim.x must be a power
//     of two <= BIAS_GRAD_THREADS.
//   bias_grad_finish: one thread per channel. Grid: 1-D, any size.
//
// WHAT BOUNDS ITS SPEED, each kernel's: memory. Bytes moved per element, s =
// sizeof(scalar_t) (4 float32, 8 float64, 2 bf16), a = sizeof(acc_t):
//   relu_forward   2 s   (read x, write y)
//   relu_backward  3 s   (read y, gy; write gx) where CuPy's greater + multiply moved
//                        s + 1 (read x, write mask) in forward and 1 + 3 s in backward
//   add            3 s   (read a, b; write y)
//   add_bias       2 s   (read and write y; the bias once a plane)
//   accumulate     3 s   (read g, read and write total) where `total + g` moved 3 s and
//                        allocated a new buffer
//   cast           s + a (bf16 <-> float32: 6 bytes)
//   bias_grad      s N C H W once + 2 a C splits, where cupy sum over (0, 2, 3) moved
//                  the same but with a transposing reduction; splits is chosen so that
//                  C * splits blocks fill the GPU (benchmarks/gpu_kernels.py).
// Predicted at batch 8: near the copy bandwidth in float32; in bf16, where a warp's
// load is 64 bytes (two sectors), 65-80% of it for the one-element-a-thread kernels
// (relu_backward, accumulate, add_bias), 75-85% for the 4-a-thread ones. bias_grad at
// batch 1 is limited by C * splits >= 1024 blocks, which the host's choice of splits
// guarantees; add_bias on fc-sized planes (a few hundred pixels) by its block count.

#include "common.cuh"

#define BIAS_GRAD_THREADS 256
#define ITEMS_PER_STEP 4

// The walk of relu_forward, add and the casts: element i's value is value(i), stored
// by store(i, v); each thread loads ITEMS_PER_STEP of them, a grid's width apart (a
// warp's k-th loads are contiguous), before it stores any.
template <typename T, typename Value, typename Store>
__device__ __forceinline__ void elementwise_steps(index_t size, Value value, Store store)
{
    const index_t step = (index_t)gridDim.x * blockDim.x;
    for (index_t i = (index_t)blockIdx.x * blockDim.x + threadIdx.x; i < size;
         i += ITEMS_PER_STEP * step) {
        T items[ITEMS_PER_STEP] = {};
PRAGMA_UNROLL()
        for (int k = 0; k < ITEMS_PER_STEP; ++k) {
            if (i + k * step < size) items[k] = value(i + k * step);
        }
PRAGMA_UNROLL()
        for (int k = 0; k < ITEMS_PER_STEP; ++k) {
            if (i + k * step < size) store(i + k * step, items[k]);
        }
    }
}

extern "C" __global__ void relu_forward(
    const scalar_t* __restrict__ x, index_t size, scalar_t* __restrict__ y)
{
    elementwise_steps<scalar_t>(
        size, [=](index_t i) { return x[i]; },
        [=](index_t i, scalar_t stored) {
            const acc_t value = to_acc(stored);
            y[i] = value > (acc_t)0 || value != value ? stored : (scalar_t)0;
        });
}

extern "C" __global__ void relu_backward(
    const scalar_t* __restrict__ y, const scalar_t* __restrict__ gy, index_t size,
    scalar_t* __restrict__ gx)
{
    GRID_STRIDE_LOOP(i, size) {
        gx[i] = to_acc(y[i]) > (acc_t)0 ? gy[i] : (scalar_t)0;
    }
}

extern "C" __global__ void add(
    const scalar_t* __restrict__ a, const scalar_t* __restrict__ b, index_t size,
    scalar_t* __restrict__ y)
{
    elementwise_steps<acc_t>(
        size, [=](index_t i) { return to_acc(a[i]) + to_acc(b[i]); },
        [=](index_t i, acc_t sum) { y[i] = from_acc(sum); });
}

extern "C" __global__ void add_bias(
    const acc_t* __restrict__ bias, index_t planes, index_t channels, index_t pixels,
    scalar_t* __restrict__ y_inout)
{
    for (index_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
        const acc_t b = bias[plane % channels];
        scalar_t* y_plane = y_inout + plane * pixels;
        GRID_STRIDE_LOOP(p, pixels) {
            y_plane[p] = from_acc(to_acc(y_plane[p]) + b);
        }
    }
}

extern "C" __global__ void accumulate(
    const scalar_t* __restrict__ g, index_t size, scalar_t* __restrict__ total_inout)
{
    GRID_STRIDE_LOOP(i, size) {
        total_inout[i] = from_acc(to_acc(total_inout[i]) + to_acc(g[i]));
    }
}

extern "C" __global__ void cast_to_acc(
    const scalar_t* __restrict__ x, index_t size, acc_t* __restrict__ y)
{
    elementwise_steps<acc_t>(
        size, [=](index_t i) { return to_acc(x[i]); }, [=](index_t i, acc_t v) { y[i] = v; });
}

extern "C" __global__ void cast_from_acc(
    const acc_t* __restrict__ x, index_t size, scalar_t* __restrict__ y)
{
    elementwise_steps<acc_t>(
        size, [=](index_t i) { return x[i]; }, [=](index_t i, acc_t v) { y[i] = from_acc(v); });
}

extern "C" __global__ void bias_grad_partial(
    const scalar_t* __restrict__ gy, index_t images, index_t channels, index_t pixels,
    index_t splits, acc_t* __restrict__ partial)
{
    __shared__ acc_t sums[BIAS_GRAD_THREADS];
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
        acc_t sum = 0;
        index_t j = first + threadIdx.x;
        index_t n = j / pixels, p = j % pixels;
        for (; j < last; j += threads) {
            sum += to_acc(gy[(n * channels + c) * pixels + p]);
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
    const acc_t* __restrict__ partial, index_t channels, index_t splits,
    acc_t* __restrict__ gb)
{
    GRID_STRIDE_LOOP(c, channels) {
        acc_t sum = 0;
        for (index_t s = 0; s < splits; ++s) sum += partial[c * splits + s];
        gb[c] = sum;
    }
}
